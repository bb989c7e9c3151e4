# Security: bandit, pip-audit and the image's user before shipping (scripts/security_scan.sh,
# deploy/security_scan.py); reports in results/security/.
#
#   SECURITY_SCAN_OFFLINE_OK=1     pass when pip-audit's advisory service is unreachable
#   SECURITY_SCAN_REQUIRE_IMAGE=1  fail when there is no Docker engine or no SERVICE_IMAGE:latest

.PHONY: security-scan

security-scan: $(STAMP) ## bandit (fails on medium/high), pip-audit, image user not root; results/security/
	PY=$(PY) scripts/security_scan.sh --image $(SERVICE_IMAGE):latest
