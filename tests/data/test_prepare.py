"""`latentlm data prepare NAME`: a registry data/ owns and layers above add to."""

import pytest


def test_preparers_register_from_above_without_data_importing_them():
    from latentlm.data import prepare as P

    def mine(root):
        return root

    P.register_preparer("test_set", mine)
    try:
        assert P.PREPARERS["test_set"] is mine
        with pytest.raises(ValueError, match="'test_set' is already registered by .*mine"):
            P.register_preparer("test_set", lambda root: root)
        import latentlm.eval.choice  # noqa: F401  registers its task sets

        assert {"smollm2", "piqa", "openbookqa", "commonsenseqa", "siqa"} <= set(P.PREPARERS)
    finally:
        del P.PREPARERS["test_set"]
