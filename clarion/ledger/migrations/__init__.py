"""The ledger's Alembic migrations; `Ledger.migrate()` runs them (there is no alembic.ini).

To add a revision after changing schema.py, autogenerate it against a database at head:

    from alembic import command
    from clarion.ledger import Ledger
    from clarion.ledger.migrate import alembic_config

    ledger = Ledger("sqlite:///scratch.db")
    ledger.migrate()
    with ledger.engine.begin() as connection:
        command.revision(alembic_config(connection), message="add clicks", autogenerate=True,
                         rev_id="0002")

then read the new file in versions/ and write its upgrade by hand where autogenerate guessed wrong.
Migrations never import schema.py: each one is a frozen description of the change it makes.
"""
