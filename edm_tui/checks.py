"""`edm-sync check`: one line per part of the configuration, passed or failed with the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edm_tui.config import Config
from edm_tui.i18n import Translatable
from edm_tui.interspire.client import IemClient
from edm_tui.interspire.errors import (
    IemAuthError,
    IemConnectionError,
    IemError,
    IemTimeout,
    is_certificate_failure,
)
from edm_tui.magento.db import MagentoDatabase
from edm_tui.magento.errors import MagentoError


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One checked part. `str()` of the texts gives the active language."""

    code: str  # stable id for scripts and the dashboard
    ok: bool
    title: Translatable
    detail: Translatable | str  # a plain string is data (a URL, an error text), shown as it is
    fix: Translatable | str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the socket form: English texts, and the messages for clients to translate."""
        texts = {"title": self.title, "detail": self.detail, "fix": self.fix}
        result: dict[str, Any] = {"code": self.code, "ok": self.ok}
        for name, text in texts.items():
            result[name] = text.english() if isinstance(text, Translatable) else text
        result["messages"] = {
            name: text.as_dict() for name, text in texts.items() if isinstance(text, Translatable)
        }
        return result


def certificate_fix(url: str) -> Translatable:
    """Return what to do when the TLS certificate of the IEM server at `url` cannot be verified."""
    return Translatable(
        "the TLS certificate of {url} could not be verified (interspire.verify_tls is true); give the "
        "IEM server a certificate that a trusted certificate authority signed, or, for a test server "
        "only, set interspire.verify_tls = false",
        url=url,
    )


async def run_checks(config: Config) -> list[CheckResult]:
    results = await _check_iem(config)
    results += await _check_magento(config)
    return results


async def _check_iem(config: Config) -> list[CheckResult]:
    i = config.interspire
    results: list[CheckResult] = []
    title_url = Translatable("IEM reachable")
    title_token = Translatable("IEM token valid")

    async with IemClient(
        i.url, i.username, i.token, timeout=min(i.timeout, 30.0), retries=0, verify=i.verify_tls
    ) as client:
        try:
            user = await client.test_token()
        except IemAuthError:
            results.append(CheckResult("iem_url", True, title_url, i.url))
            results.append(
                CheckResult(
                    "iem_token",
                    False,
                    title_token,
                    Translatable("IEM refused user {user} with this token", user=i.username),
                    Translatable(
                        "copy the XML username and token from IEM's user settings (Advanced User Settings) "
                        "into interspire.username and interspire.token; after several refused tries IEM "
                        "also refuses a correct token from this machine for a few minutes, so wait 5 "
                        "minutes before you check again"
                    ),
                )
            )
            return results
        except IemError as error:
            if is_certificate_failure(error):
                fix = certificate_fix(i.url)
            elif isinstance(error, (IemConnectionError, IemTimeout)):
                fix = Translatable(
                    "check the host name and port in interspire.url, and that this machine can reach "
                    "that server (DNS, firewall, proxy)"
                )
            else:
                fix = Translatable(
                    "check interspire.url: it must be the XML path shown in IEM's user settings, "
                    "ending in xml.php"
                )
            results.append(CheckResult("iem_url", False, title_url, f"{i.url}: {error}", fix))
            return results

        results.append(CheckResult("iem_url", True, title_url, i.url))
        results.append(
            CheckResult(
                "iem_token",
                True,
                title_token,
                Translatable(
                    "user {user} (id {userid})",
                    user=user.get("username", i.username),
                    userid=user.get("userid", "?"),
                ),
            )
        )

        lists = {item.listid: item for item in await client.get_lists()}
        for list_id in sorted({i.list_id, *i.website_lists.values()}):
            if list_id in lists:
                results.append(
                    CheckResult(
                        f"iem_list_{list_id}",
                        True,
                        Translatable("IEM list {list_id}", list_id=list_id),
                        Translatable(
                            "{name}, {count} subscribers",
                            name=lists[list_id].name,
                            count=lists[list_id].subscribecount,
                        ),
                    )
                )
            else:
                known = ", ".join(f"{k} ({v.name})" for k, v in sorted(lists.items())) or Translatable("none")
                results.append(
                    CheckResult(
                        f"iem_list_{list_id}",
                        False,
                        Translatable("IEM list {list_id}", list_id=list_id),
                        Translatable("not found among the lists this user can see: {known}", known=known),
                        Translatable(
                            "set interspire.list_id (or the interspire.website_lists entry) to one of those ids"
                        ),
                    )
                )

        fields_wanted = {"firstname_field_id": i.firstname_field_id, "lastname_field_id": i.lastname_field_id}
        if any(fields_wanted.values()):
            fields = {f.fieldid: f for f in await client.get_custom_fields(i.list_id)}
            for key, field_id in fields_wanted.items():
                if not field_id:
                    continue
                title = Translatable("IEM custom field {key}", key=key)
                if field_id in fields:
                    results.append(
                        CheckResult(f"iem_{key}", True, title, f"{field_id} ({fields[field_id].name})")
                    )
                else:
                    known = ", ".join(f"{k} ({v.name})" for k, v in sorted(fields.items())) or Translatable(
                        "none"
                    )
                    results.append(
                        CheckResult(
                            f"iem_{key}",
                            False,
                            title,
                            Translatable(
                                "field {field_id} not found; the list's fields are: {known}",
                                field_id=field_id,
                                known=known,
                            ),
                            Translatable("set interspire.{key} to one of those ids", key=key),
                        )
                    )
    return results


async def _check_magento(config: Config) -> list[CheckResult]:
    m = config.magento
    title = Translatable("Magento database reachable")
    where = m.unix_socket or f"{m.host}:{m.port}"
    try:
        db = await MagentoDatabase.connect(
            host=m.host,
            port=m.port,
            user=m.user,
            password=m.password,
            database=m.database,
            unix_socket=m.unix_socket,
            table_prefix=m.table_prefix,
        )
    except MagentoError as error:
        return [
            CheckResult(
                "magento_connect",
                False,
                title,
                str(error),
                Translatable("check the [magento] host, port, user, password and database"),
            )
        ]

    results = [
        CheckResult(
            "magento_connect",
            True,
            title,
            Translatable(
                "{database} on {where}, {server}",
                database=m.database,
                where=where,
                server=await db.server_info(),
            ),
        )
    ]
    try:
        missing = await db.check_tables()
        prefix_note = (
            Translatable("with prefix '{prefix}'", prefix=m.table_prefix)
            if m.table_prefix
            else Translatable("no prefix")
        )
        if missing:
            results.append(
                CheckResult(
                    "magento_tables",
                    False,
                    Translatable("Magento tables"),
                    Translatable("missing ({note}): {tables}", note=prefix_note, tables=", ".join(missing)),
                    Translatable(
                        "set magento.table_prefix to db/table_prefix of app/etc/env.php, and magento.database "
                        "to the shop's database"
                    ),
                )
            )
            return results
        results.append(
            CheckResult(
                "magento_tables",
                True,
                Translatable("Magento tables"),
                Translatable("all present ({note})", note=prefix_note),
            )
        )

        results.append(await _check_websites(db, config))

        missing_rights = await db.check_write_rights()
        if missing_rights:
            results.append(
                CheckResult(
                    "magento_rights",
                    False,
                    Translatable("Rights to update newsletter_subscriber"),
                    Translatable("missing: {rights}", rights=", ".join(missing_rights)),
                    Translatable(
                        "grant them, e.g. GRANT SELECT, INSERT, UPDATE ON shop.newsletter_subscriber TO 'user'@'host'"
                    ),
                )
            )
        else:
            results.append(
                CheckResult(
                    "magento_rights",
                    True,
                    Translatable("Rights to update newsletter_subscriber"),
                    Translatable("SELECT, INSERT, UPDATE and queue-link DELETE granted"),
                )
            )
    finally:
        await db.close()
    return results


async def _check_websites(db: MagentoDatabase, config: Config) -> CheckResult:
    """Check that every website named in interspire.website_lists exists in the shop."""
    title = Translatable("Websites in interspire.website_lists")
    websites = await db.website_ids()
    unknown = unknown_websites(config.interspire.website_lists, websites)
    if unknown:
        return CheckResult("magento_websites", False, title,
                           Translatable("website {ids} not found; the shop's websites are {known}",
                                        ids=", ".join(map(str, unknown)), known=", ".join(map(str, websites))),
                           Translatable("correct the website ids (the keys) of interspire.website_lists"))
    return CheckResult("magento_websites", True, title,
                       Translatable("all found among the shop's websites ({known})",
                                    known=", ".join(map(str, websites))))


def unknown_websites(website_lists: Mapping[int, int], websites: Iterable[int]) -> list[int]:
    """Return the website ids of `website_lists` that the shop does not have, in ascending order."""
    return sorted(set(website_lists) - set(websites))
