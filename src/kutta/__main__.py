"""``python -m kutta`` and ``torchrun -m kutta`` run the ``kutta`` command."""

from kutta.cli.app import main

if __name__ == "__main__":
    main()
