"""A Kafka outage while logging loses no lookup and no accepted log record, and the counts
say what happened (DESIGN §8: logging never blocks or fails a lookup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from braid.config import KafkaConfig
from braid.logging import log_topic
from braid.logging.serving import make_logger, open_repo_log
from braid.store import FeatureStore
from tests.integration.test_log_and_wait import T1, _rows, served  # noqa: F401  (fixture)
from tests.kafka_fixtures import ProxiedBroker


def test_kafka_cut_while_logging(served: dict[str, Any], kafka_behind_proxy: ProxiedBroker,  # noqa: F811
                                 tmp_path: Path) -> None:
    root: Path = served["root"]
    config = served["store"].config.model_copy(
        update={"kafka": KafkaConfig(bootstrap=kafka_behind_proxy.bootstrap)})
    store = FeatureStore(root, config=config)
    store._loggers["fraud_v1"] = make_logger(store.repo, "fraud_v1", max_buffered=1000,
                                             max_backoff=0.05)
    logger = store.serving_logger("fraud_v1")
    plain = [store.get_online_features(_rows([u]), service="fraud_v1", now=T1).to_dict()
             for u in range(1, 21)]
    for u in range(1, 6):  # the broker is up: records flow
        r = store.get_online_features(_rows([u]), service="fraud_v1", now=T1, log=True)
        assert r.to_dict() == plain[u - 1]
    assert logger.flush(timeout=30) is True
    kafka_behind_proxy.proxy.cut()
    for u in range(6, 21):  # the broker is unreachable: lookups still answer at once
        r = store.get_online_features(_rows([u]), service="fraud_v1", now=T1, log=True)
        assert r.to_dict() == plain[u - 1]
    kafka_behind_proxy.proxy.restore()
    assert logger.flush(timeout=60) is True
    s = logger.stats()
    assert (s["offered"], s["accepted"], s["dropped"], s["buffered"]) == (20, 20, 0, 0)
    assert s["delivered"] == 20
    log = open_repo_log(config)
    try:
        assert sum(log.end_offsets(log_topic("fraud", "fraud_v1")).values()) == 20
    finally:
        log.close()
        logger.close()
