"""Reports rendered from findings: shared text formatting, markdown, HTML pieces, plots, the browser check."""
