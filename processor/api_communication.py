"""The original's ``processor.api_communication`` module: posting a result to tix-api (see :mod:`processor.compat`)."""

from processor.compat.api_communication import (
    TIX_API_HOST,
    TIX_API_PASS,
    TIX_API_PORT,
    TIX_API_SSL,
    TIX_API_URL_TEMPLATE,
    TIX_API_USER,
    post_results,
    prepare_results_for_api,
    prepare_url,
)

__all__ = [
    "TIX_API_HOST",
    "TIX_API_PASS",
    "TIX_API_PORT",
    "TIX_API_SSL",
    "TIX_API_URL_TEMPLATE",
    "TIX_API_USER",
    "post_results",
    "prepare_results_for_api",
    "prepare_url",
]
