"""Object stores (``s3://``, ``file://``) behind one Protocol, found by URL scheme: URIs and mirror
templates checked, GETs presigned for the engines, failures explained."""
