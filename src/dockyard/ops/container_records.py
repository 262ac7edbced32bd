"""Container records: find, save, update state (SQLite ``containers`` table)."""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dockyard.errors import Conflict, ContainerNotFound, InvalidArgument
from dockyard.oci.timefmt import format_ns, now_ns
from dockyard.store.store import Store

ZERO_TIME = "0001-01-01T00:00:00Z"
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def new_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
    }


@dataclass
class Container:
    id: str
    name: str
    image: str
    image_name: str
    created: str
    driver: str
    chain: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=new_state)
    network: dict[str, Any] | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    def dir(self, store: Store) -> Path:
        return store.root / "containers" / self.id

    def sock_dir(self) -> Path:
        """Short path for the monitor's unix sockets (limited to 107 bytes)."""
        return Path("/run/dockyard") / self.id[:16]


def network_mode(container: Container) -> Literal["bridge", "host", "none"]:
    """The container's network: Docker's "default" is the bridge."""
    configured = container.host_config.get("NetworkMode", "default")
    return "host" if configured == "host" else "none" if configured == "none" else "bridge"


_COLS = "id, name, image, image_name, created, driver, chain, config, host_config, state, network"


def _row(row: tuple[Any, ...]) -> Container:
    return Container(
        id=row[0],
        name=row[1],
        image=row[2],
        image_name=row[3],
        created=row[4],
        driver=row[5],
        chain=row[6],
        config=json.loads(row[7]),
        host_config=json.loads(row[8]),
        state=json.loads(row[9]),
        network=json.loads(row[10]) if row[10] else None,
    )


def all_containers(store: Store) -> list[Container]:
    rows = store.conn.execute(f"SELECT {_COLS} FROM containers").fetchall()
    return [_row(r) for r in rows]


def find_container(store: Store, name_or_id: str) -> Container:
    """Docker's lookup: full ID, exact name, then unique ID prefix."""
    conn = store.conn
    key = name_or_id.removeprefix("/")
    row = conn.execute(f"SELECT {_COLS} FROM containers WHERE id = ?", (key,)).fetchone()
    if row is None:
        row = conn.execute(f"SELECT {_COLS} FROM containers WHERE name = ?", (key,)).fetchone()
    if row is None and key and all(c in "0123456789abcdef" for c in key):
        rows = conn.execute(
            f"SELECT {_COLS} FROM containers WHERE id LIKE ? LIMIT 2", (key + "%",)
        ).fetchall()
        if len(rows) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {key}")
        row = rows[0] if rows else None
    if row is None:
        raise ContainerNotFound(name_or_id)
    return _row(row)


def reload(store: Store, container: Container) -> Container:
    return find_container(store, container.id)


def insert(store: Store, container: Container) -> None:
    try:
        with store.transaction() as conn:
            conn.execute(
                f"INSERT INTO containers({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    container.id,
                    container.name,
                    container.image,
                    container.image_name,
                    container.created,
                    container.driver,
                    container.chain,
                    json.dumps(container.config),
                    json.dumps(container.host_config),
                    json.dumps(container.state),
                    json.dumps(container.network) if container.network else None,
                ),
            )
    except sqlite3.IntegrityError as e:
        other = store.conn.execute(
            "SELECT id FROM containers WHERE name = ?", (container.name,)
        ).fetchone()
        if other is None:
            raise
        raise name_conflict(container.name, other[0]) from e


def name_conflict(name: str, other_id: str) -> Conflict:
    return Conflict(
        f'Conflict. The container name "/{name}" is already in use by container '
        f'"{other_id}". You have to remove (or rename) that container to be able to reuse '
        "that name."
    )


def update(store: Store, container_id: str, **fields: Any) -> None:
    """Write the given columns (state, network, name, config) of one container."""
    sets = []
    values: list[Any] = []
    for key, value in fields.items():
        if key not in ("state", "network", "name", "config", "host_config"):
            raise ValueError(key)
        sets.append(f"{key} = ?")
        values.append(json.dumps(value) if key != "name" and value is not None else value)
    values.append(container_id)
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"UPDATE containers SET {', '.join(sets)} WHERE id = ?", values)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def update_state(store: Store, container_id: str, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the stored State atomically; returns the new State."""
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT state FROM containers WHERE id = ?", (container_id,)).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return {}
        state: dict[str, Any] = json.loads(row[0])
        state.update(changes)
        conn.execute(
            "UPDATE containers SET state = ? WHERE id = ?", (json.dumps(state), container_id)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return state


def delete(store: Store, container_id: str) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM containers WHERE id = ?", (container_id,))


def new_id(store: Store) -> str:
    while True:
        cid = secrets.token_hex(32)
        if cid[:12].isdigit():  # Docker avoids IDs that look like numbers
            continue
        if not store.conn.execute("SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone():
            return cid


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.removeprefix("/")


_LEFT = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold "
    "boring brave busy charming clever compassionate competent condescending confident cool "
    "cranky crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant "
    "eloquent epic exciting fervent festive flamboyant focused friendly frosty funny gallant "
    "gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible inspiring "
    "intelligent interesting jolly jovial keen kind laughing loving lucid magical modest musing "
    "mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic "
    "pensive practical priceless quirky quizzical recursing relaxed reverent romantic sad "
    "serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty trusting "
    "unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial youthful zealous "
    "zen"
).split()
_RIGHT = (
    "agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin babbage "
    "banach bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn blackwell "
    "bohr booth borg bose bouman boyd brahmagupta brattain brown buck burnell cannon carson "
    "cartwright cerf chandrasekhar chaplygin chatelet chatterjee chebyshev clarke colden cori "
    "cray curie darwin davinci dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley "
    "edison einstein elbakyan elgamal elion ellis engelbart euclid euler faraday feistel "
    "fermat fermi feynman franklin gagarin galileo galois ganguly gates gauss germain goldberg "
    "goldstine goldwasser golick goodall gould greider grothendieck haibt hamilton haslett "
    "hawking heisenberg hellman hermann herschel hertz heyrovsky hodgkin hofstadter hoover "
    "hopper hugle hypatia ishizaka jackson jang jemison jennings jepsen johnson joliot jones "
    "kalam kapitsa kare keldysh keller kepler khayyam khorana kilby kirch knuth kowalevski "
    "lalande lamarr lamport leakey leavitt lederberg lehmann lewin lichterman liskov lovelace "
    "lumiere mahavira margulis matsumoto maxwell mayer mccarthy mcclintock mclaren mclean "
    "mcnulty meitner mendel mendeleev meninsky merkle mestorf mirzakhani montalcini moore "
    "morse moser murdock napier nash neumann newton nightingale nobel noether northcutt noyce "
    "panini pare pascal pasteur payne perlman pike poincare poitras proskuriakova ptolemy "
    "raman ramanujan rhodes ride ritchie robinson roentgen rosalind rubin saha sammet sanderson "
    "satoshi shamir shannon shaw shirley shockley shtern sinoussi snyder solomon spence "
    "stonebraker sutherland swanson swartz swirles taussig tesla tharp thompson torvalds tu "
    "turing varahamihira vaughan villani visvesvaraya volhard wescoff wilbur wiles williams "
    "williamson wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def random_name(store: Store) -> str:
    for attempt in range(10):
        name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if attempt:
            name += str(secrets.randbelow(10))
        if not store.conn.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
            return name
    return f"dockyard_{secrets.token_hex(6)}"


def now() -> str:
    return format_ns(now_ns())


def monitor_pid(container: Container) -> int | None:
    try:
        text = (container.sock_dir() / "monitor.pid").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False
