"""docker-compose.yml stays valid: the production-like topology the README documents."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_compose_services_and_ports() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"kafka", "redis", "jobmanager", "taskmanager", "braid"}
    ports = {name: s.get("ports", []) for name, s in services.items()}
    assert "9092:9092" in ports["kafka"]
    assert "6379:6379" in ports["redis"]
    assert "8081:8081" in ports["jobmanager"]
    assert "6566:6566" in ports["braid"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--appendonly" in services["redis"]["command"]
    assert services["braid"]["environment"]["BRAID_REDIS_URL"].startswith("redis://redis:")
    for build in (services["jobmanager"]["build"], services["braid"]["build"]["dockerfile"]):
        path = ROOT / build if build.endswith("Dockerfile") else ROOT / build / "Dockerfile"
        assert path.is_file(), path
    assert "flink-sql-connector-kafka" in (ROOT / "docker/flink/Dockerfile").read_text()
    for name, s in services.items():
        for dep in s.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
