// guacamole-lite (the npm package, a dev dependency) on loopback, for the relay
// benchmark: `node lite_launcher.js --port P --guacd-port G --key KEY [--nodelay]`.
// KEY: 32 ASCII characters, the AES-256-CBC key its tokens are encrypted with.
// --nodelay sets TCP_NODELAY on every socket it opens (its guacd connections);
// as shipped, Node leaves Nagle's algorithm on for them.
'use strict';

const net = require('net');

const args = process.argv.slice(2);
function option(name, fallback) {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
}

if (args.includes('--nodelay')) {
    const connect = net.Socket.prototype.connect;
    net.Socket.prototype.connect = function (...rest) {
        this.setNoDelay(true);
        return connect.apply(this, rest);
    };
}

const GuacamoleLite = require('guacamole-lite');

const server = new GuacamoleLite(
    { host: '127.0.0.1', port: Number(option('--port', '8081')) },
    { host: '127.0.0.1', port: Number(option('--guacd-port', '4822')) },
    {
        crypt: { cypher: 'AES-256-CBC', key: option('--key', '') },
        log: { level: 'ERRORS' },
    },
);
server.on('error', (error) => console.error('guacamole-lite:', error));
console.log('guacamole-lite listening');
