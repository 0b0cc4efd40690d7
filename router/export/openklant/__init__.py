"""The export to Open Klant (Klantinteracties API): `contact-router export openklant` (docs/openklant.md).

- `client`: the HTTP client of one tenant's Open Klant (Token auth, bounded concurrency, retries with
  backoff and jitter on 5xx and timeouts, a 4xx as `Refused` with the fields it names);
- `mapping`: our ids → Open Klant uuids in Redis, with the marks that say a create may have happened;
- `sync`: makes one contact's objects in Open Klant match the store (what `router.core.openklant`
  maps), looking an object up before creating it again;
- `consumer`: a queue per tenant, `openklant.events.<tenant>`, its dead letters and replays.
"""
