"""Keep champion: the no-drift branch of the monitoring pipeline; says which champion stays."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def keep_champion(registry_uri: str, model_name: str) -> str:
    """Returns (and logs) the version of the champion that stays in place."""
    from voltpipe.registry import open_registry

    champion = open_registry(registry_uri).get(model_name)
    version = champion.version if champion else ""
    print(f"voltpipe: no drift; {model_name} champion v{version or '-'} stays")
    return version
