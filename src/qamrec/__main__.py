from qamrec.cli import main

main()
