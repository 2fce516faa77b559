"""Testing a store backend with lash's conformance suite: one call, or one test per check."""

import kv_store
import pytest
from kv_store import KVStore

import lash
import lash.testing


@pytest.mark.anyio
async def test_kv_store_conforms() -> None:
    # Every check, each against a fresh store from the factory; every failure is reported.
    report = await lash.testing.check_store(KVStore)
    assert report.checks == lash.testing.STORE_CHECKS


@pytest.mark.anyio
@pytest.mark.parametrize("check", lash.testing.STORE_CHECKS)
async def test_kv_store_check(check: str) -> None:
    # One test case per check: pytest names the check that fails and shows its traceback.
    await lash.testing.run_store_check(check, lambda: KVStore("kv://"))


@pytest.mark.anyio
async def test_hosts_select_it_by_url() -> None:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", kv_store],
        autoload=False,
        store="kv://",
        provider="scripted",
        options={"scripted": {"responses": [{"text": "Stored in a key-value database."}]}},
    )
    async with core:
        assert isinstance(core.store, KVStore)
        async with core.session("kv") as session:
            result = await session.turn("Where do you keep this?").run()
        assert (result.outcome, result.revision) == ("completed", 1)
        (row,) = await core.store.list_sessions()
        assert (row.session_id, row.last_user_message) == ("kv", "Where do you keep this?")
