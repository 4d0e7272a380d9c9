"""How the engine shows catalog titles."""

from qamrec.serve.engine import display_title


def test_display_title():
    assert display_title("Matrix, The") == "The Matrix"
    assert display_title("Ocean's Eleven (a.k.a. Ocean's 11)") == "Ocean's Eleven"
    assert display_title("Raiders of the Lost Ark (Indiana Jones and the Raiders of the Lost Ark)") == \
        "Raiders of the Lost Ark"
    assert display_title("City of Lost Children, The (Cité des enfants perdus, La)") == "The City of Lost Children"
    assert display_title("(500) Days of Summer") == "(500) Days of Summer"
    assert display_title("Heat") == "Heat"
