"""``catalogue-tagger-backfill``: re-tag a range of upload days as a Dagster backfill (the code location's
own command: the library's ``catalogue-tagger`` never imports Dagster)."""

from __future__ import annotations

from datetime import datetime

import click

from catalogue_tagger.cli.output import CannotRun, user_errors
from catalogue_tagger.config import Settings
from dagster_defs.backfill import BackfillError, launch_graphql, launch_job_backfill, partition_keys
from dagster_defs.partitions import PartitionScheme

DAY = click.DateTime(formats=["%Y-%m-%d"])


@click.command()
@click.option("--from", "first", type=DAY, required=True, help="First upload day (UTC), YYYY-MM-DD.")
@click.option("--to", "last", type=DAY, required=True, help="Last upload day (UTC), YYYY-MM-DD, included.")
@click.option(
    "--graphql-url",
    help="Launch an asset backfill through this Dagster webserver (http://host:port/graphql); the daemon runs it. "
    "Without it, `dagster job backfill` submits the runs to the instance in --dagster-home. "
    "Default: $DAGSTER_GRAPHQL_URL.",
)
@click.option(
    "--dagster-home",
    type=click.Path(exists=True, file_okay=False),
    help="The Dagster instance (folder of dagster.yaml) to submit runs to, without --graphql-url. "
    "Default: $DAGSTER_HOME.",
)
@click.option("-m", "--module", "module", default="dagster_defs", show_default=True, help="Code location module.")
@click.option("-w", "--workspace", type=click.Path(exists=True, dir_okay=False), help="A workspace.yaml instead.")
@click.option("--force", is_flag=True, help="Re-tag tracks already tagged (e.g. after a model upgrade).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the backfill finishes.")
def main(
    first: datetime,
    last: datetime,
    graphql_url: str | None,
    dagster_home: str | None,
    module: str,
    workspace: str | None,
    force: bool,
    wait: bool,
) -> None:
    """Tag every partition from --from to --to as one Dagster backfill (--force re-tags tagged tracks).

    \b
    Example:
      catalogue-tagger-backfill --from 2024-05-01 --to 2024-05-07 --force
      catalogue-tagger-backfill --from 2024-05-01 --to 2024-05-07 --graphql-url http://dagster:80/graphql
    """
    with user_errors():
        settings = Settings.from_env()
    graphql_url = graphql_url or settings.dagster_graphql_url
    dagster_home = dagster_home or (str(settings.dagster_home) if settings.dagster_home else None)
    try:
        keys = partition_keys(first.date(), last.date(), PartitionScheme.from_settings(settings))
        if graphql_url:
            result = launch_graphql(graphql_url, keys, force=force, wait=wait)
        elif dagster_home:
            target = ("-w", workspace) if workspace else ("-m", module)
            result = launch_job_backfill(
                keys, dagster_home=dagster_home, target=target, force=force, wait=wait, echo=click.echo
            )
        else:
            raise click.UsageError("give --graphql-url (a Dagster webserver) or --dagster-home / DAGSTER_HOME")
    except BackfillError as exc:
        raise CannotRun(str(exc)) from exc
    click.echo(f"backfill {result.backfill_id}: {len(result.partition_keys)} partitions, {result.status}")
    if result.status not in ("LAUNCHED", "COMPLETED", "COMPLETED_SUCCESS"):
        raise SystemExit(1)
