"""Alembic's environment for the hub's schema: run by :func:`soundscene.apps.hub.db.upgrade` through
``alembic.command.upgrade``, on the connection it passes as ``config.attributes["connection"]`` (inside the
transaction and under the lock that :func:`~soundscene.apps.hub.db.upgrade` holds)."""

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError("the hub's migrations run online only, on the connection soundscene.apps.hub.db.upgrade "
                       "passes as config.attributes['connection']")

context.configure(connection=connection, target_metadata=config.attributes.get("target_metadata"),
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
