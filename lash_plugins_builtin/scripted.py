"""``scripted``: registers lash's deterministic offline model as the provider ``"scripted"``.

The model itself is :class:`lash.ScriptedProvider` (scripts from code, JSON or TOML files); this
plugin builds one from its options (``[options.scripted]``): ``script`` names a script file,
``responses`` holds responses inline.
"""

from __future__ import annotations

import attrs

import lash
from lash import ScriptedProvider, ScriptedResponse, ScriptedToolCall, load_script

__all__ = [
    "PROVIDER_NAME",
    "ScriptedOptions",
    "ScriptedProvider",
    "ScriptedResponse",
    "ScriptedToolCall",
    "load_script",
    "register_providers",
]

#: The name the plugin registers its provider under.
PROVIDER_NAME = "scripted"


@attrs.frozen
class ScriptedOptions:
    """Options of the ``scripted`` plugin (``[options.scripted]``).

    Set ``script`` (a JSON or TOML file) or ``responses`` (inline), not both. With neither, the
    provider has an empty script and its first use fails with a message saying so.
    """

    script: str | None = lash.option(
        default=None, help="path of a JSON or TOML script file (relative to the working directory)"
    )
    # RUF009 ignored: lash.option is a field specifier (attrs.field plus lash metadata); with
    # factory=list every instance gets its own list, nothing is shared.
    responses: list[ScriptedResponse] = lash.option(
        factory=list, help="responses given inline, played in order"
    )


lash_plugin = lash.PluginMeta(
    options=ScriptedOptions,
    description="Deterministic offline model: plays a script of responses (tests, demos).",
)


@lash.hookimpl
def register_providers(register: lash.RegisterProvider, options: ScriptedOptions | None) -> None:
    """Register the ``scripted`` provider, built from the plugin's options."""
    opts = options if options is not None else ScriptedOptions()
    if opts.script is not None and opts.responses:
        raise lash.ConfigError(
            "[options.scripted]: set either `script` (a file) or `responses` (inline), not both"
        )
    if opts.script is not None:
        provider = ScriptedProvider.from_file(opts.script)
    else:
        provider = ScriptedProvider(opts.responses)
    register(PROVIDER_NAME, provider)
