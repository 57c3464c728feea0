"""Server-rendered pages. Views check roles and objects, then delegate to services."""
