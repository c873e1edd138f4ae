"""The simulated guacd as a server: guacd's handshake rules, TLS, CLI, shutdown."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.errors import GuacdUnreachable, NoGuacdAvailable
from protocols.guacd import GuacdClient, GuacdEndpoint
from protocols.guacd_args import GUACD_1_5_5_ARGS, RemoteProtocol
from protocols.instruction import Instruction, encode_instructions
from protocols.simulated.guacd import SimulatedGuacd
from protocols.stream import read_instruction
from tests.protocols.helpers import FAST, StreamView, request_for

REPO = Path(__file__).resolve().parents[2]
StartGuacd = Callable[..., Awaitable[SimulatedGuacd]]


async def _raw(server: SimulatedGuacd) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def test_wrong_connect_arity_gets_ready_then_the_connection_closes(
    start_guacd: StartGuacd,
) -> None:
    # guacd 1.5.5 acknowledges `connect` with `ready` and only then checks the
    # count ("Client did not return the expected number of arguments"): no error.
    server = await start_guacd()
    reader, writer = await _raw(server)
    names = GUACD_1_5_5_ARGS[RemoteProtocol.VNC]
    handshake = [
        Instruction("select", ("vnc",)),
        Instruction.of("size", 1024, 768, 96),
        Instruction("audio"),
        Instruction("video"),
        Instruction("image"),
        Instruction("connect", ("VERSION_1_5_0", *[""] * (len(names) - 1))),  # one short
    ]
    writer.write(encode_instructions(handshake))
    view = StreamView(reader)
    await view.until_eof()
    await _close(writer)
    assert view.opcodes() == ["args", "ready"]
    record = server.last_handshake
    assert record is not None and not record.accepted
    assert server.active == 0


async def test_unknown_protocol_is_closed_without_a_word(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    reader, writer = await _raw(server)
    writer.write(Instruction("select", ("telnet-nope",)).to_bytes())
    async with asyncio.timeout(5):
        assert await read_instruction(reader) is None
    await _close(writer)


def test_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(SimulatedGuacd().start("0.0.0.0", 0))


async def test_aclose_drops_live_connections_cleanly(start_guacd: StartGuacd) -> None:
    server = await start_guacd()
    client = GuacdClient([GuacdEndpoint("127.0.0.1", server.port)], timeouts=FAST)
    connection = await client.connect(request_for())
    assert server.active == 1
    await server.aclose()
    view = StreamView(connection.reader)
    await view.until_eof()
    await connection.aclose()
    assert server.active == 0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guacd.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "guacd.pem", directory / "guacd.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_guacd(start_guacd: StartGuacd, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = await start_guacd(tls=server_tls)

    trusted = GuacdEndpoint("127.0.0.1", server.port, tls=ssl.create_default_context(cafile=cert))
    connection = await GuacdClient([trusted], timeouts=FAST).connect(request_for())
    view = StreamView(connection.reader)
    await view.until_opcode("sync")
    await connection.aclose()

    untrusted = GuacdEndpoint("127.0.0.1", server.port, tls=ssl.create_default_context())
    with pytest.raises(NoGuacdAvailable) as caught:
        await GuacdClient([untrusted], timeouts=FAST).connect(request_for())
    assert isinstance(caught.value.attempts[0], GuacdUnreachable)
    assert "TLS" in str(caught.value)


async def test_command_line_server_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "protocols.simulated.guacd",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--first-frame-delay",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("simulated guacd listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        client = GuacdClient([GuacdEndpoint("127.0.0.1", port)], timeouts=FAST)
        connection = await client.connect(request_for(RemoteProtocol.SSH))
        await StreamView(connection.reader).until_opcode("sync")
        await connection.aclose()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
