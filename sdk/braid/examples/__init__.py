"""Example data for the fraud repository in feature_repo/."""
