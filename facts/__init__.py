"""Custom pyinfra facts: the host state Phoenix's tasks compare against."""
