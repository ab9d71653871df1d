"""``atoll serve``: Atoll's services over HTTP (an interface layer, like the CLI).

One Falcon WSGI application under gunicorn; the same store and catalog as the CLI. Each service is a
module listed in :data:`provider.api.services.SERVICE_MODULES` with a ``register(api)`` function — see
that module for how to add one.
"""
