# Retraining on feedback (README, "Retraining on feedback"): training/retrain.py trains on SST-2
# plus the service's labelled feedback; deploy/retrain_listener.py starts it on an alert.
#
#   CONFIG=                     the training profile (configs/training_quick.yaml on 2 CPU cores)
#   RETRAIN_WEBHOOK_SECRET=     the listener's shared secret (or RETRAIN_WEBHOOK_SECRET_FILE=)
#   RETRAIN_LISTENER_PORT=      the listener's port (default 9095), RETRAIN_COOLDOWN_S= (3600)

.PHONY: retrain retrain-listener

retrain: $(STAMP) ## SST-2 + labelled feedback -> train CONFIG, register @candidate, evaluate (with the feedback hold-out), promotion gate
	@# Exit 3 is "skipped: too little feedback" (said on the last line), not a failure of make.
	$(PY) -m training.retrain --config $(CONFIG) || [ $$? -eq 3 ]

retrain-listener: $(STAMP) ## Alertmanager webhook (POST /alertmanager, RETRAIN_WEBHOOK_SECRET): runs make retrain on drift/accuracy alerts
	CONFIG=$(CONFIG) $(PY) -m deploy.retrain_listener
