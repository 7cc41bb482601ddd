"""What realm_tf writes to disk, and how it is written so that no reader sees half of it."""
