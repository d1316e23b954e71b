"""What the AppTest files share: starting the app on a page, reading its pictures and URL."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "checkpoints").glob("*.safetensors"))


def start(page: str = "pages/overview.py", pick: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    if pick:
        at.sidebar.selectbox(key="view.model").set_value(f"file:{pick}").run()
    if page != "pages/overview.py":
        at.switch_page(page).run()
    return at


def open_link(page: str, **query) -> AppTest:
    """A new session opened on a link: `page` with `query`, as a browser that pastes the URL."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.switch_page(page).run()
    return at


def session_of(at: AppTest):
    """The app's one per-user object (pages/ui/state.py Session)."""
    return at.session_state["latent_explorer"]


def view_of(at: AppTest):
    """What the session is looking at (pages/ui/view.py View)."""
    return session_of(at).view


def image_urls(at: AppTest) -> list[str]:
    """URLs of every picture on the page: data: URIs of their PNG (media URLs, named by a hash of
    the bytes, for big ones), so equal URLs mean equal pictures."""
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def query(at: AppTest, key: str) -> str:
    value = at.query_params[key]
    return value if isinstance(value, str) else value[0]


def assert_clean(at: AppTest):
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def map_spec(at: AppTest) -> dict | None:
    """The latent map's plotly figure (JSON) as the page sent it: the clickable map component's
    figure argument, else (no writable cache for the component) st.plotly_chart's spec."""
    import json

    for element in at.get("component_instance"):
        if element.proto.component_name.endswith("map_view"):
            return json.loads(json.loads(element.proto.json_args)["figure"])
    charts = at.get("plotly_chart")
    return json.loads(charts[0].proto.spec) if charts else None


def plotly_values(x):
    """A plotly array as numpy: a list, or the typed array {"dtype", "bdata": base64} plotly >= 6 writes."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]) if isinstance(x, dict) else np.asarray(x)


# -- the page as the browser builds it --------------------------------------------------------------
class BrowserRejects(AssertionError):
    """A delta the browser's element tree refuses: the app goes blank with this error in the console."""


class _Node:
    """A node of the browser's element tree: a block (its type, children) or an element (block None)."""

    def __init__(self, block: str | None = None, children: list | None = None):
        self.block, self.children = block, children or []


def _set_node(parent: _Node, path: list[int], node: _Node, full_path: list[int]) -> None:
    """The frontend's setNodeAtPath (AppRoot's SetNodeAtPathVisitor), its three refusals included."""
    index, rest = path[0], path[1:]
    if not 0 <= index <= len(parent.children):
        raise BrowserRejects(f"{full_path}: Bad delta path index {index} (should be between [0, {len(parent.children)}])")
    if index == len(parent.children):
        if rest:
            raise BrowserRejects(f"{full_path}: Cannot set a node at a delta path")
        parent.children.append(node)
    elif not rest:
        old = parent.children[index]
        if node.block is not None and old.block == node.block:
            node.children = old.children  # addBlock keeps a same-typed block's children
        parent.children[index] = node
    elif parent.children[index].block is None:
        raise BrowserRejects(f"{full_path}: 'setIn' cannot be called on an ElementNode")
    else:
        _set_node(parent.children[index], rest, node, full_path)


def assert_browser_accepts(messages) -> None:
    """Build a fresh page from one run's ForwardMsgs as the browser does, and fail where it would fail.

    AppTest hands over its queue unflushed, so the server's coalescing (a later delta at a path that an
    earlier one in the queue wrote takes that earlier one's place) is applied in full: the order a
    browser receives when no flush falls inside the run, which on a busy server is a matter of chance."""
    root = _Node("root", [_Node("main"), _Node("sidebar"), _Node("event"), _Node("bottom")])
    for msg in messages:
        if not msg.HasField("delta"):
            continue
        kind, path = msg.delta.WhichOneof("type"), list(msg.metadata.delta_path)
        if kind == "add_block":
            _set_node(root, path, _Node(msg.delta.add_block.WhichOneof("type") or "vertical"), path)
        elif kind == "new_element":
            _set_node(root, path, _Node(), path)
