"""Node.js with the `ws` package (npm) as a client of our servers: `node/client.mjs`, a
client written by hand from docs/protocol.md, knowing nothing of session-py.

It calls methods, gets a notification and error responses, answers the server's requests
(one it serves, one it does not), and closes with a code and a reason. The test checks
every text frame node received, verbatim and in order, and what our server recorded.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import NODE_DIR
from .rawpeer import WELCOME
from .support import ADAPTERS, NOT_FOUND_NOPE, assert_quiet, serving

NOT_FOUND = json.dumps(NOT_FOUND_NOPE, separators=(",", ":"))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_node_ws_client_at_our_server(adapter: str, node: str, caplog: pytest.LogCaptureFixture) -> None:
    with serving(adapter) as served:
        done = subprocess.run(
            [node, "client.mjs", served.url + "node"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        seen = json.loads(done.stdout)
        summary = {"confirm": {"result": "yes from node to node"}, "nope": NOT_FOUND_NOPE}
        assert seen["received"] == [
            WELCOME,
            '{"type":"response","id":1,"result":{"x":[1,2,3],"s":"é"}}',
            '{"type":"response","id":2,"result":5}',
            '{"type":"errorresponse","id":3,"error":"boom"}',
            '{"type":"errorresponse","id":4,"error":' + NOT_FOUND + "}",
            '{"type":"errorresponse","id":5,"error":"boom"}',
            '{"type":"request","id":1,"method":"confirm","data":"node"}',
            '{"type":"request","id":2,"method":"nope","data":"node"}',
            '{"type":"notification","method":"confirmed","data":'
            + json.dumps(summary, separators=(",", ":"))
            + "}",
            '{"type":"response","id":6,"result":"thanks"}',
        ]
        assert seen["close"] == {"code": 4000, "reason": "node done"}
        assert served.record.wait("asked") == [("node", summary)]
        assert served.record.wait("report") == [({"from": "node", "welcome": "hi", "confirmed": summary},)]
        assert served.record.wait("closed") == [(4000, "node done")]
    assert_quiet(caplog)
