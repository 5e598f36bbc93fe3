"""The privacy notice: versions an admin publishes in the browser; every consent records the one it agreed to."""
