"""Blue-green deployment of the service image with Docker (`python -m deploy`)."""
