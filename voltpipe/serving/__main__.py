"""Container entrypoint: ``python -m voltpipe.serving`` serves the model named by AIP_STORAGE_URI."""

from voltpipe.errors import exit_on_user_error
from voltpipe.serving.server import serve_from_env

if __name__ == "__main__":
    with exit_on_user_error():
        serve_from_env()
