"""How a pipeline run is found again in MLflow: by its key tags, or by the tags an older
release gave it.

Each kind of run has a key (``sanode.kind`` plus what identifies it: the study, the rule,
``eps_train``, the settings' ``sanode.digest``). A tune run was keyed ``sanode.kind=study``
and ``sanode.settings=<digest>`` before the names were given one meaning each; a run found
under those former tags is resumed and tagged with the current ones, so studies begun
before the renaming go on in the same MLflow runs.
"""

from __future__ import annotations

from collections.abc import Mapping

# current tag -> the name older releases wrote it under
_FORMER_NAMES = {"sanode.digest": "sanode.settings"}
# (tag, current value) -> the value older releases wrote
_FORMER_VALUES = {("sanode.kind", "tune"): "study"}


def former_tags(tags: Mapping[str, str]) -> dict[str, str] | None:
    """``tags`` as older releases wrote them; ``None`` where they wrote them the same.

    >>> former_tags({"sanode.kind": "tune", "sanode.digest": "ab12"})
    {'sanode.kind': 'study', 'sanode.settings': 'ab12'}
    """
    old = {_FORMER_NAMES.get(k, k): _FORMER_VALUES.get((k, v), v) for k, v in tags.items()}
    return None if old == dict(tags) else old


def _query(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _find(mlflow_client, exp_id: str, tags: Mapping[str, str]) -> str | None:
    runs = mlflow_client.search_runs(
        [exp_id], filter_string=_query(tags), max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0].info.run_id if runs else None


def _locate(mlflow_client, exp_id: str, tags: Mapping[str, str]) -> tuple[str | None, bool]:
    """The newest run with ``tags``, else with their former names and values; and whether it
    was found under the former ones."""
    run_id = _find(mlflow_client, exp_id, tags)
    former = former_tags(tags)
    if run_id is None and former is not None:
        run_id = _find(mlflow_client, exp_id, former)
        return run_id, run_id is not None
    return run_id, False


def find_run(mlflow_client, exp_id: str, tags: Mapping[str, str]) -> str | None:
    """The newest run of the experiment whose tags equal ``tags`` (or their former names and
    values); ``None`` if there is none."""
    return _locate(mlflow_client, exp_id, tags)[0]


def start_or_resume_run(
    mlflow_client,
    exp_id: str,
    *,
    key: Mapping[str, str],
    name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Reuse the run identified by the ``key`` tags (set back to RUNNING, given the current
    key tags when an older release wrote it) or create it."""
    run_id, formerly = _locate(mlflow_client, exp_id, key)
    if run_id is not None:
        if formerly:  # found by the current tags from now on
            for tag, value in key.items():
                mlflow_client.set_tag(run_id, tag, value)
        mlflow_client.update_run(run_id, status="RUNNING")
        return run_id
    all_tags = {**key, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return mlflow_client.create_run(exp_id, tags=all_tags, run_name=name).info.run_id


def mark_stale_runs(
    mlflow_client, exp_id: str, tags: Mapping[str, str], status: str = "KILLED"
) -> list[str]:
    """Close runs with these tags (or their former ones) that a killed process left RUNNING;
    returns their ids."""
    stale: list[str] = []
    for query_tags in (tags, former_tags(tags)):
        if query_tags is None:
            continue
        query = f"{_query(query_tags)} and attributes.status = 'RUNNING'"
        stale += [r.info.run_id for r in mlflow_client.search_runs([exp_id], filter_string=query)]
    stale = list(dict.fromkeys(stale))  # a run re-tagged by a resume matches both
    for run_id in stale:
        mlflow_client.set_tag(run_id, "sanode.closed_as", status)
        mlflow_client.set_terminated(run_id, status=status)
    return stale
