"""Reference implementations: what the checks compare against, and building
blocks later chapters import when a learner skipped ahead."""
