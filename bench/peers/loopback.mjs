// Preloaded with `node --import` before a peer gateway: every server whose
// listen() names no host binds 127.0.0.1 instead of all interfaces, so the
// benchmark never opens a port beyond loopback.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    if (args.length === 1 || args[1] === undefined || typeof args[1] === 'function') {
      const rest = args.slice(1).filter((a) => a !== undefined);
      return listen.call(this, args[0], '127.0.0.1', ...rest);
    }
  } else if (args[0] && typeof args[0] === 'object' && !args[0].host && !args[0].path) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
