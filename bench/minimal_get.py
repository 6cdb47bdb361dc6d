"""The yardstick of mdl's start-up: a 15-line Typer app doing `mdl get URL -o FILE` with httpx2,
as anyone would write it (bench/startup.py times it beside `mdl get`)."""

from pathlib import Path

import httpx2
import typer

app = typer.Typer()


@app.callback()
def main() -> None:
    """A group, as mdl is: `minimal_get.py get URL -o FILE`."""


@app.command()
def get(url: str, output: Path = typer.Option(..., "-o", "--output")) -> None:
    with httpx2.Client() as client, client.stream("GET", url) as response:
        response.raise_for_status()
        with output.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)


if __name__ == "__main__":
    app()
