"""LICENSE and CITATION.cff: valid CFF 1.2.0 structure (cffconvert is not a dependency), in step with pyproject."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO

# From the CFF 1.2.0 schema: the keys a file and a reference may have, and the values `type` may take.
TOP_LEVEL_KEYS = {
    "abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers", "keywords",
    "license", "license-url", "message", "preferred-citation", "references", "repository", "repository-artifact",
    "repository-code", "title", "type", "url", "version",
}  # fmt: skip
REQUIRED_KEYS = {"authors", "cff-version", "message", "title"}
REFERENCE_REQUIRED_KEYS = {"authors", "title", "type"}
REFERENCE_KEYS = REFERENCE_REQUIRED_KEYS | {
    "abstract", "collection-title", "conference", "date-published", "doi", "edition", "editors", "identifiers",
    "institution", "issue", "journal", "keywords", "license", "month", "notes", "number", "pages", "publisher",
    "repository-code", "start", "end", "url", "version", "volume", "year",
}  # fmt: skip
REFERENCE_TYPES = {"article", "conference-paper", "data", "database", "proceedings", "report", "software", "website"}
PERSON_KEYS = {"family-names", "given-names", "name-particle", "name-suffix", "affiliation", "email", "orcid", "alias"}
ENTITY_KEYS = {"name", "address", "city", "country", "email", "website", "alias"}
DOI = re.compile(r"^10\.\d{4,9}(\.\d+)?/[A-Za-z0-9:/_;\-.()\[\]\\]+$")  # the schema's DOI pattern
URL = re.compile(r"^(https|http|ftp|sftp)://.+")


def _check_authors(authors: list, where: str) -> None:
    assert isinstance(authors, list) and authors, where
    for author in authors:
        if "name" in author:  # an entity
            assert set(author) <= ENTITY_KEYS, (where, author)
        else:  # a person
            assert "family-names" in author and set(author) <= PERSON_KEYS, (where, author)
        assert all(isinstance(value, str) and value for value in author.values()), (where, author)


def _check_common(entry: dict, where: str) -> None:
    if "doi" in entry:
        assert DOI.match(entry["doi"]), (where, entry["doi"])
    if "url" in entry:
        assert URL.match(entry["url"]), (where, entry["url"])
    if "year" in entry:
        assert isinstance(entry["year"], int), where


def test_citation_file_is_valid_cff_1_2() -> None:
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert REQUIRED_KEYS <= set(citation) <= TOP_LEVEL_KEYS, set(citation) ^ TOP_LEVEL_KEYS
    assert citation["cff-version"] == "1.2.0"
    assert citation["type"] in ("software", "dataset")
    assert isinstance(citation["message"], str) and isinstance(citation["title"], str)
    _check_authors(citation["authors"], "authors")
    _check_common(citation, "top level")
    for index, reference in enumerate(citation["references"]):
        where = f"references[{index}]"
        assert REFERENCE_REQUIRED_KEYS <= set(reference) <= REFERENCE_KEYS, (where, set(reference))
        assert reference["type"] in REFERENCE_TYPES, where
        _check_authors(reference["authors"], where)
        _check_common(reference, where)


def test_citation_names_the_paper_and_matches_pyproject() -> None:
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert (citation["version"], citation["license"]) == (project["version"], project["license"])
    paper = citation["references"][0]
    assert paper["title"] == "Improving Acoustic Scene Classification in Low-Resource Conditions"
    assert [f"{a['given-names']} {a['family-names']}" for a in paper["authors"]] == [
        "Zhi Chen", "Yun-Fei Shao", "Yong Ma", "Mingsheng Wei", "Le Zhang", "Wei-Qiang Zhang",
    ]  # fmt: skip
    assert paper["doi"] == "10.48550/arXiv.2412.20722"


def test_license_is_mit_as_pyproject_says() -> None:
    text = (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the DS-FlexiNet reproduction contributors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text
