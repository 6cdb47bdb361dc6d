"""Where files come from: the Hub, direct URLs, ``hf://`` URIs, serverless job outputs and mirrors.
Turns a catalog entry or a one-off source into ``RemoteFile``s with what is known about them."""
