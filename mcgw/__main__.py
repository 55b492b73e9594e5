from mcgw.app.cli import main

main()
