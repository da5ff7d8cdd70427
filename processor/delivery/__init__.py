"""Delivery of a result: the payload, tix-api, failed results and the IP-to-AS lookup."""
