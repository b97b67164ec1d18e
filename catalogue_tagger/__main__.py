from catalogue_tagger.cli import main

main()
