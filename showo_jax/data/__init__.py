"""Host-side data: procedural toy datasets and Show-o2 sequence formats (numpy only)."""
