"""Monitor: finds offline and never-seen devices and their return, and opens incidents."""
