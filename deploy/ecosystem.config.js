// pm2 (https://pm2.keymetrics.io): `pm2 start deploy/ecosystem.config.js` from the repo root.
// One engine server, one miner per hotkey. Edit the wallet names and ports; add an app per hotkey.
// Log rotation: `pm2 install pm2-logrotate` (pm2's own module; 10 MB x 7 files below).
// SN72 has been halted in the subnet's code since 2026-05-06: validators send no challenges. Do not
// register a hotkey for it until the subnet resumes (README, "Running a miner").
module.exports = {
  apps: [
    {
      name: "roadwork-serve",
      script: "roadwork",
      args: "serve --host 127.0.0.1 --port 8000",
      interpreter: "none",
      autorestart: true,
      restart_delay: 5000,
      max_restarts: 50,
      kill_timeout: 15000, // SIGTERM first: in-flight requests finish (deadline 8 s)
      env: { HF_HUB_OFFLINE: "1" },
      max_memory_restart: "8G",
    },
    {
      name: "roadwork-miner-default",
      script: "roadwork",
      args: "mine --wallet.name default --wallet.hotkey default --axon.port 8091 --logging.logging_dir logs/miner-default",
      interpreter: "none",
      autorestart: true,
      restart_delay: 5000,
      max_restarts: 50,
      kill_timeout: 15000,
      env: { HF_HUB_OFFLINE: "1" },
    },
  ],
};
// pm2-logrotate settings used with this file:
//   pm2 set pm2-logrotate:max_size 10M && pm2 set pm2-logrotate:retain 7
