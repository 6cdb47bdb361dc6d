"""The workflows over the same stages (resolve -> plan -> fetch -> record): ``pull`` catalog models,
``get`` one-off sources, ``lock`` them into catalog.lock, ``add``/``remove`` catalog entries."""
