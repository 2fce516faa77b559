"""What the conformance suite says about a store that forgets the fencing token."""

import asyncio

from kv_store import Batch, KVStore, empty_head

import lash
import lash.store
import lash.testing


class UnfencedStore(KVStore):
    """Broken on purpose: any lease may commit, current or not."""

    async def commit(
        self,
        session_id: str,
        *,
        lease: lash.store.Lease,
        expected_revision: int,
        delta: lash.store.CommitDelta,
    ) -> int:
        head = self._head(session_id) or empty_head()
        head["lease"] = [lease.owner, lease.token, lease.expires_at]  # whoever asks, wins
        self._write(Batch(self.data), session_id, head)
        return await super().commit(
            session_id, lease=lease, expected_revision=expected_revision, delta=delta
        )


async def main() -> lash.testing.StoreConformanceError:
    try:
        await lash.testing.check_store(UnfencedStore)
    except lash.testing.StoreConformanceError as error:
        print(error)
        return error
    raise AssertionError("the suite passed a store without fencing")


if __name__ == "__main__":
    asyncio.run(main())
