from faceledger.cli.main import main

main()
