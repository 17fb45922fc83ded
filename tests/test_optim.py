"""salseg.optim: one factory builds every method's optimiser; ``adam`` and ``adamw`` are two optimisers."""

import pytest
import torch

from salseg.optim import build_optimizer, multistep, stepwise


def _groups():
    return [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1},
            {"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1.0}]


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_each_name_builds_its_optimizer_with_the_groups_and_hyper_parameters(name, cls):
    opt = build_optimizer(name, _groups(), lr=0.01, momentum=0.8, weight_decay=1e-4)
    assert type(opt) is cls
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]  # each group keeps its own learning rate
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups) and opt.defaults["lr"] == 0.01
    if name == "sgd":
        assert all(g["momentum"] == 0.8 for g in opt.param_groups)
    else:
        assert opt.defaults["betas"] == (0.9, 0.999)  # torch's defaults, as the methods always used


def test_an_unknown_name_is_one_line_naming_the_key_and_the_known_values():
    with pytest.raises(ValueError, match=r"^model\.optimizer must be one of \('sgd', 'adam', 'adamw'\), "
                                         r"got 'rmsprop'$") as err:
        build_optimizer("rmsprop", _groups(), lr=0.01, momentum=0.9, weight_decay=0.0)
    assert "\n" not in str(err.value)


def test_multistep_without_a_trainer_keeps_the_milestones_and_steps_every_optimizer_step():
    opt = build_optimizer("sgd", _groups(), lr=0.1, momentum=0.0, weight_decay=0.0)
    conf = stepwise(opt, multistep(opt, [2, 3], 0.1))
    assert conf["lr_scheduler"]["interval"] == "step" and conf["optimizer"] is opt
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        conf["lr_scheduler"]["scheduler"].step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_a_bad_config_value_reaches_the_user_as_the_registrys_one_line_build_error():
    from salseg import registry

    with pytest.raises(registry.BuildError, match=r"^model\.optimizer must be one of .*got 'rmsprop'$"):
        registry.build_model({"kind": "menet", "optimizer": "rmsprop"})
