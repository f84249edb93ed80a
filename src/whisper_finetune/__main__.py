from whisper_finetune.cli import main

raise SystemExit(main())
