"""A self-hosted newsletter and advocacy-alert mailer."""
