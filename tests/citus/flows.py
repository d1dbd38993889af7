"""The REST API's main flows against a running server (used by tests/citus/run.sh): merchants, keys, earn/spend with
idempotent replays, rules, balances and histories, and audit-chain verification. Exits non-zero on the first
unexpected answer. Prints one line per flow.

usage: flows.py BASE_URL ADMIN_KEY MERCHANTS
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

BASE, ADMIN_KEY, MERCHANTS = sys.argv[1], sys.argv[2], int(sys.argv[3])


def call(method, path, key, body=None, merchant=None, expect=(200, 201)):
    headers = {"x-api-key": key, "content-type": "application/json"}
    if merchant:
        headers["x-merchant-id"] = merchant
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload = response.status, json.load(response)
    except urllib.error.HTTPError as error:
        status, payload = error.code, json.load(error)
    if status not in expect:
        sys.exit(f"FAIL {method} {path}: {status} {payload}")
    return status, payload.get("data"), payload


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL {message}")


run = uuid.uuid4().hex[:8]
merchants = []
started = time.monotonic()
for index in range(MERCHANTS):
    status, data, _ = call("POST", "/api/v1/merchants", ADMIN_KEY,
                           {"slug": f"citus-{run}-{index}", "name": f"Citus {index}"})
    check(status == 201, f"register: {status}")
    merchants.append((data["merchant"]["merchant_id"], data["api_key"]["key"]))
print(f"ok   merchants: {MERCHANTS} registered in {time.monotonic() - started:.2f} s")

for merchant_id, key in merchants:
    # keys: create one with fewer scopes, list, use, revoke, refused afterwards
    status, data, _ = call("POST", "/api/v1/api-keys", key, {"name": "reader", "scopes": ["points:read"]})
    reader, reader_id = data["key"], data["key_id"]
    _, listed, _ = call("GET", "/api/v1/api-keys", key)
    check(any(item["key_id"] == reader_id for item in listed["items"]), "the new key is listed")
    call("DELETE", f"/api/v1/api-keys/{reader_id}", key)
    call("GET", "/api/v1/points/accounts/alice", reader, expect=(401,))

    # rules: 10 points per EUR, then earn by amount
    call("PUT", "/api/v1/rules/default", key,
         {"currency": "EUR", "unit_amount": "1.00", "points_per_unit": 10, "rounding": "floor"})
    status, earned, _ = call("POST", "/api/v1/points/earn", key,
                             {"uid": "alice", "amount": "12.50", "currency": "EUR", "idempotency_key": "order-1"})
    check(status == 201 and earned["entry"]["delta"] == 125, f"earn by amount: {earned}")
    status, replay, _ = call("POST", "/api/v1/points/earn", key,
                             {"uid": "alice", "amount": "12.50", "currency": "EUR", "idempotency_key": "order-1"})
    check(status == 200 and replay["replayed"] is True, f"replay: {replay}")
    call("POST", "/api/v1/points/earn", key,
         {"uid": "alice", "amount": "99.00", "currency": "EUR", "idempotency_key": "order-1"}, expect=(409,))
    call("POST", "/api/v1/points/earn", key, {"uid": "bob", "points": 40, "idempotency_key": "bonus-1"})
    status, spent, _ = call("POST", "/api/v1/points/spend", key,
                            {"uid": "alice", "points": 50, "idempotency_key": "spend-1"})
    check(spent["balance"] == 75, f"spend: {spent}")
    call("POST", "/api/v1/points/spend", key, {"uid": "alice", "points": 500, "idempotency_key": "spend-2"},
         expect=(422,))
    _, account, _ = call("GET", "/api/v1/points/accounts/alice", key)
    check(account["balance"] == 75, f"balance: {account}")
    _, history, _ = call("GET", "/api/v1/points/accounts/alice/entries?page_size=10", key)
    check([entry["delta"] for entry in history["items"]] == [-50, 125], f"history: {history}")
    # an admin acting for the merchant sees the same account
    _, same, _ = call("GET", "/api/v1/points/accounts/alice", ADMIN_KEY, merchant=merchant_id)
    check(same["balance"] == 75, f"admin view: {same}")
print(f"ok   keys, rules, earn/spend with replays, balances and histories for {MERCHANTS} merchants")

# audit: the records are written in the background; wait until the chain has them, then verify
deadline = time.monotonic() + 30
for merchant_id, key in merchants:
    while True:
        _, verified, _ = call("GET", "/api/v1/audit-logs/verify", key)
        check(verified["ok"] is True, f"audit verify: {verified}")
        if verified["checked"] >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    check(verified["checked"] >= 8, f"audit records checked: {verified}")
_, platform, _ = call("GET", "/api/v1/reports/liability", ADMIN_KEY)
print(f"ok   audit chains verified for {MERCHANTS} merchants; platform liability report answered")
print("MERCHANTS " + " ".join(f"{merchant_id}={key}" for merchant_id, key in merchants))
