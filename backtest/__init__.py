"""The backtest: the services' own signal, risk and paper-execution cores, in one process, in simulated time."""
