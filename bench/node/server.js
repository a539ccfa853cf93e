// ding-dong (npm), the Node FastAGI peer: sends the benchmark script's command lines in order,
// each after the previous reply, as bench/agi_servers.py's peers do. Usage: node server.js PORT SCRIPT_JSON
const AGIServer = require('ding-dong');
const fs = require('fs');

const [port, scriptPath] = process.argv.slice(2);
const commands = JSON.parse(fs.readFileSync(scriptPath, 'utf8')).commands.map((c) => c.replace(/\n$/, ''));

const handler = async (context) => {
  context.on('error', () => {});
  await context.onEvent('variables');
  for (const command of commands) {
    await context.sendCommand(command);
  }
  await context.end();
};

AGIServer(handler).start(parseInt(port, 10), '127.0.0.1');
console.log('ready');
