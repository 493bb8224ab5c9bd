from spendlog.cli import main

main()
