"""The connection parameters guacd asks for, by protocol.

``GUACD_1_5_5_ARGS`` is what guacd 1.5.5 answers to ``select`` (after the
protocol version), as captured in ``shared/guacd/args-1.5.5.txt``. The client
does not rely on it (it answers whatever list guacd sends); the simulated
guacd reproduces it, and `protocols.parameters` checks names against it.
"""

from __future__ import annotations

from enum import StrEnum

PROTOCOL_VERSION = "VERSION_1_5_0"


class RemoteProtocol(StrEnum):
    """The remote desktop protocols the broker asks guacd for."""

    RDP = "rdp"
    VNC = "vnc"
    SSH = "ssh"


_VNC = """
hostname port read-only encodings username password swap-red-blue color-depth cursor autoretry
clipboard-encoding dest-host dest-port enable-audio audio-servername reverse-connect
listen-timeout enable-sftp sftp-hostname sftp-host-key sftp-port sftp-username sftp-password
sftp-private-key sftp-passphrase sftp-directory sftp-root-directory sftp-server-alive-interval
sftp-disable-download sftp-disable-upload recording-path recording-name recording-exclude-output
recording-exclude-mouse recording-include-keys create-recording-path disable-copy disable-paste
wol-send-packet wol-mac-addr wol-broadcast-addr wol-udp-port wol-wait-time force-lossless
"""

_RDP = """
hostname port domain username password width height dpi initial-program color-depth
disable-audio enable-printing printer-name enable-drive drive-name drive-path create-drive-path
disable-download disable-upload console console-audio server-layout security ignore-cert
disable-auth remote-app remote-app-dir remote-app-args static-channels client-name
enable-wallpaper enable-theming enable-font-smoothing enable-full-window-drag
enable-desktop-composition enable-menu-animations disable-bitmap-caching
disable-offscreen-caching disable-glyph-caching preconnection-id preconnection-blob timezone
enable-sftp sftp-hostname sftp-host-key sftp-port sftp-username sftp-password sftp-private-key
sftp-passphrase sftp-directory sftp-root-directory sftp-server-alive-interval
sftp-disable-download sftp-disable-upload recording-path recording-name recording-exclude-output
recording-exclude-mouse recording-exclude-touch recording-include-keys create-recording-path
resize-method enable-audio-input enable-touch read-only gateway-hostname gateway-port
gateway-domain gateway-username gateway-password load-balance-info disable-copy disable-paste
wol-send-packet wol-mac-addr wol-broadcast-addr wol-udp-port wol-wait-time force-lossless
normalize-clipboard
"""

_SSH = """
hostname host-key port username password font-name font-size enable-sftp sftp-root-directory
sftp-disable-download sftp-disable-upload private-key passphrase color-scheme command
typescript-path typescript-name create-typescript-path recording-path recording-name
recording-exclude-output recording-exclude-mouse recording-include-keys create-recording-path
read-only server-alive-interval backspace terminal-type scrollback locale timezone disable-copy
disable-paste wol-send-packet wol-mac-addr wol-broadcast-addr wol-udp-port wol-wait-time
"""

GUACD_1_5_5_ARGS: dict[RemoteProtocol, tuple[str, ...]] = {
    RemoteProtocol.VNC: tuple(_VNC.split()),
    RemoteProtocol.RDP: tuple(_RDP.split()),
    RemoteProtocol.SSH: tuple(_SSH.split()),
}
