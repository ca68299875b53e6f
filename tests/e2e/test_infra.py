"""Offline checks of the Bicep templates under infra/ (the Bicep compiler and Azure CLI are not available here).

tree-sitter-bicep checks the syntax of every file; pycep-parser gives the structure the other checks read. Each
check is a plain function that returns a list of problems, so the tests on the deliberately broken templates in
tests/fixtures/infra/ call exactly the functions that pass on the real ones. These checks see literal values and
follow parameters, variables and module arguments; they do not type-check or evaluate ARM expressions, so
`az bicep build --file infra/bicep/main.bicep` (or `azd provision --preview`) remains the full check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import tree_sitter_bicep
from pycep import BicepParser
from pydantic import ValidationError
from tree_sitter import Language, Parser

from shared.adapters.settings import Settings
from shared.adapters.storage import TABLE_NAMES, queue_names

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "bicep" / "main.bicep"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "infra"

# Settings the code reads that the template must NOT set in Azure. Keep this list explicit and short.
LOCAL_ONLY_SETTINGS = {
    # A storage connection string (Azurite). In Azure the identity-based AzureWebJobsStorage__* settings replace it.
    "AzureWebJobsStorage",
    # Development sign-in: a loopback token issuer, and switching token checks off (refused in Azure).
    "AUTH_LOCAL_ISSUER",
    "AUTH_DISABLED",
    # The key of the development secret store (webhook secrets in Azurite); Azure uses WEBHOOK_KEY_VAULT_URL.
    "WEBHOOK_SECRETS_KEY",
}

# App settings whose names look secret but whose values are not: the App Insights connection string only
# identifies the component, and ingestion requires Entra ID once local auth is off (checked below).
NOT_SECRET_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}

UAMI = "Microsoft.ManagedIdentity/userAssignedIdentities"
# Role definition id -> (role name, type of the resource it must be assigned on), all for the app's identity.
IDENTITY_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": ("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts"),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Microsoft.KeyVault/vaults"),
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": ("Key Vault Secrets Officer", "Microsoft.KeyVault/vaults"),
}

_TREE_SITTER = Parser(Language(tree_sitter_bicep.language()))
_PYCEP = BicepParser()
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# Names whose last word says "this is a secret value" (AZURE_KEY_VAULT_NAME and tokenSigningKeyUri are fine).
_SECRET_WORDS = {"key", "keys", "secret", "secrets", "password", "pwd", "token", "sas"}
# What a secret-bearing expression looks like in pycep's tree (as JSON) or in Bicep text.
_SECRET_VALUE = re.compile(
    r"list_func|\blist[A-Z]\w*|connection_?string|instrumentation_?key|primary_?key|secondary_?key|account_?key",
    re.I,
)
_LIST_FUNCTION = re.compile(r"\blist(?:[A-Z]\w*)?\(")


# ---- parsing --------------------------------------------------------------------------------------------------

def syntax_problems(path: Path) -> list[str]:
    """ERROR/MISSING nodes from tree-sitter-bicep, and a failure of pycep-parser (which the other checks need)."""
    source = path.read_bytes()
    problems = []
    stack = [_TREE_SITTER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            text = node.text.decode(errors="replace")[:40]
            what = f"missing {node.type}" if node.is_missing else f"cannot parse {text!r}"
            problems.append(f"{path.name}:{node.start_point.row + 1}:{node.start_point.column + 1}: {what}")
        elif node.has_error:
            stack.extend(node.children)
    try:
        _PYCEP.parse(text=source.decode())
    except Exception as exc:  # lark's UnexpectedInput family, with line and column in the message
        problems.append(f"{path.name}: pycep-parser: {str(exc).splitlines()[0]}")
    return problems


@cache
def _parse(path: Path) -> dict:
    return _PYCEP.parse(text=path.read_text())


@dataclass(eq=False)
class Template:
    """One parsed .bicep file as deployed: the module call that deploys it (its caller and arguments)."""

    path: Path
    tree: dict
    caller: Template | None = None
    args: dict = field(default_factory=dict)
    children: dict[str, Template] = field(default_factory=dict)

    def section(self, name: str) -> dict:
        return self.tree.get(name) or {}


def load(main: Path) -> list[Template]:
    """The entry template and, recursively, every local module it deploys."""

    def visit(path: Path, caller: Template | None, args: dict) -> list[Template]:
        template = Template(path, _parse(path), caller, args)
        loaded = [template]
        for symbol, module in template.section("modules").items():
            assert module["type"] == "local", f"{path.name}: module {symbol} is not a local file"
            child_path = (path.parent / module["detail"]["path"]).resolve()
            children = visit(child_path, template, _unwrap(module["config"])[0].get("params") or {})
            template.children[symbol] = children[0]
            loaded += children
        return loaded

    return visit(main.resolve(), None, {})


def _unwrap(config: dict) -> tuple[dict, dict | None, object]:
    """A resource or module body, with its loop and condition (pycep nests a looped/conditional body)."""
    if "config" in config and set(config) <= {"loop_type", "condition", "config"}:
        return config["config"], config.get("loop_type"), config.get("condition")
    return config, None, None


def declared(templates: list[Template], resource_type: str) -> list[tuple[Template, str, dict]]:
    """(template, symbol, body) of each resource of that type that the templates create (not `existing`)."""
    return [
        (t, symbol, _unwrap(resource["config"])[0])
        for t in templates
        for symbol, resource in t.section("resources").items()
        if resource["type"].lower() == resource_type.lower() and not resource["existing"]
    ]


# ---- a small evaluator: literals, parameters, variables, module arguments, loops, interpolation ------------------

class Unknown(Exception):
    """Only known at deployment time (a resource property, a module output, a function) or not evaluated here."""


@dataclass(frozen=True)
class Value:
    """An already evaluated value (a loop item), so that it is not mistaken for an identifier."""

    value: object


def resolve(expr, t: Template, env: dict) -> tuple[object, Template, dict]:
    """Follow bare identifiers: loop items, variables, parameters (to the module argument, else the default).

    pycep represents identifiers and string literals alike as str, so a string that names a declared symbol
    is taken to be that symbol. The templates avoid such names.
    """
    while isinstance(expr, str) and _IDENT.match(expr):
        if expr in env:
            expr, t, env = env[expr]
        elif expr in t.section("variables"):
            expr = t.section("variables")[expr]["value"]
        elif expr in t.section("parameters"):
            if t.caller is not None and expr in t.args:
                expr, t, env = t.args[expr], t.caller, {}
            elif t.section("parameters")[expr].get("default") is not None:
                expr = t.section("parameters")[expr]["default"]
            else:
                break  # a parameter only given at deployment time
        else:
            break
    return expr, t, env


def accessor_chain(expr) -> list:
    """`a.b.c` -> ['a', 'b', 'c'] (pycep nests property access to the right)."""
    parts = []
    while isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        operands = expr["operator"]["operands"]
        parts.append(operands["operand_1"])
        expr = operands["operand_2"]
    return parts + [expr]


def evaluate(expr, t: Template, env: dict | None = None):
    expr, t, env = resolve(expr, t, env or {})
    if isinstance(expr, Value):
        return expr.value
    if expr is None or isinstance(expr, (bool, int, float)):
        return expr
    if isinstance(expr, list):
        return [evaluate(item, t, env) for item in expr]
    if isinstance(expr, str):
        if _IDENT.match(expr) and any(expr in t.section(s) for s in ("resources", "modules", "parameters")):
            raise Unknown(expr)
        return _INTERPOLATION.sub(lambda m: str(_evaluate_path(m.group(1).strip().split("."), t, env)), expr)
    if "loop_type" in expr:
        detail = expr["loop_type"]["detail"]
        items = evaluate(detail["array_name"], t, env)
        return [evaluate(expr["config"], t, {**env, detail["item_name"]: (Value(item), t, {})}) for item in items]
    if "operator" in expr:
        if expr["operator"]["type"] == "property_accessor":
            return _evaluate_path(accessor_chain(expr), t, env)
        raise Unknown(expr["operator"]["type"])
    if "function" in expr:
        raise Unknown(expr["function"]["type"])
    return {_key(k): evaluate(v, t, env) for k, v in expr.items()}


def _evaluate_path(path: list, t: Template, env: dict):
    if not all(isinstance(p, str) and _IDENT.match(p) for p in path):
        raise Unknown(".".join(map(str, path)))
    value = evaluate(path[0], t, env)
    for name in path[1:]:
        if not isinstance(value, dict) or name not in value:
            raise Unknown(".".join(path))
        value = value[name]
    return value


def _key(key: str) -> str:
    return key[1:-1] if key[:1] == key[-1:] == "'" else key


def _value_or_none(expr, t: Template, env: dict | None = None):
    try:
        return evaluate(expr, t, env)
    except Unknown:
        return None


def _get(body: dict, dotted: str):
    for name in dotted.split("."):
        body = body.get(name) if isinstance(body, dict) else None
    return body


# ---- structural checks ----------------------------------------------------------------------------------------

def _property_problems(templates, resource_type: str, label: str, expected: dict) -> list[str]:
    found = declared(templates, resource_type)
    if not found:
        return [f"no {label} ({resource_type}) is declared"]
    problems = []
    for t, symbol, body in found:
        for prop, want in expected.items():
            got = _value_or_none(_get(body, prop), t)
            if got != want:
                problems.append(f"{t.path.name}: {label} {symbol}: {prop} is {got!r}, expected {want!r}")
    return problems


def storage_problems(templates: list[Template]) -> list[str]:
    return _property_problems(templates, "Microsoft.Storage/storageAccounts", "storage account", {
        "properties.allowSharedKeyAccess": False,
        "properties.supportsHttpsTrafficOnly": True,
        "properties.minimumTlsVersion": "TLS1_2",
        "properties.allowBlobPublicAccess": False,
    })


def key_vault_problems(templates: list[Template]) -> list[str]:
    return _property_problems(templates, "Microsoft.KeyVault/vaults", "key vault", {
        "properties.enableRbacAuthorization": True,
        "properties.enableSoftDelete": True,
    })


def app_insights_problems(templates: list[Template]) -> list[str]:
    return _property_problems(templates, "Microsoft.Insights/components", "Application Insights", {
        "properties.DisableLocalAuth": True,
    })


def function_app_problems(templates: list[Template]) -> list[str]:
    return _property_problems(templates, "Microsoft.Web/sites", "function app", {
        "kind": "functionapp,linux",
        "properties.httpsOnly": True,
        "properties.siteConfig.minTlsVersion": "1.2",
        "properties.siteConfig.ftpsState": "Disabled",
        "properties.functionAppConfig.runtime.name": "python",
        "properties.functionAppConfig.runtime.version": "3.11",
        "properties.functionAppConfig.scaleAndConcurrency.instanceMemoryMB": 2048,
        "properties.functionAppConfig.deployment.storage.authentication.type": "UserAssignedIdentity",
    }) + _property_problems(templates, "Microsoft.Web/serverfarms", "plan", {
        "sku.name": "FC1",
        "sku.tier": "FlexConsumption",
    }) + [
        # Without it, Key Vault references are resolved with a system-assigned identity the app does not have.
        f"{t.path.name}: function app {symbol}: keyVaultReferenceIdentity is not the user-assigned identity"
        for t, symbol, body in declared(templates, "Microsoft.Web/sites")
        if _get(body, "properties.keyVaultReferenceIdentity") is None
    ]


def is_identity_property(expr, t: Template, env: dict | None = None, prop: str = "principalId") -> bool:
    """True if expr is <identity>.properties.<prop> of a user-assigned identity the templates create, followed
    through parameters, variables and module outputs."""
    expr, t, env = resolve(expr, t, env or {})
    chain = accessor_chain(expr)
    if len(chain) != 3 or not all(isinstance(p, str) for p in chain) or chain[2] != prop:
        return False
    symbol, kind, _ = chain
    if kind == "properties":
        resource = t.section("resources").get(symbol)
        return bool(resource) and resource["type"] == UAMI and not resource["existing"]
    if kind == "outputs" and symbol in t.children:
        module = t.children[symbol]
        output = module.section("outputs").get(prop)
        return output is not None and is_identity_property(output["value"], module, {}, prop)
    return False


def _role_id(expr, t: Template, env: dict) -> str | None:
    if isinstance(expr, dict) and expr.get("function", {}).get("type") == "subscription_resource_id":
        expr = expr["function"]["parameters"]["resource_name_1"]
    match = _GUID.search(str(_value_or_none(expr, t, env) or ""))
    return match.group(0).lower() if match else None


def role_assignment_problems(templates: list[Template]) -> list[str]:
    """The five roles of the app's identity: present, unconditional, on the right resource, named by guid(...)."""
    found: dict[str, list[tuple[Template, str, dict, dict]]] = {role: [] for role in IDENTITY_ROLES}
    for t, symbol, resource in [
        (t, s, r) for t in templates for s, r in t.section("resources").items()
        if r["type"] == "Microsoft.Authorization/roleAssignments" and not r["existing"]
    ]:
        body, loop, condition = _unwrap(resource["config"])
        if condition is not None:
            continue  # a conditional assignment (the deploying user's) does not count
        envs = [{}]
        if loop:
            detail = loop["detail"]
            try:
                envs = [{detail["item_name"]: (Value(item), t, {})} for item in evaluate(detail["array_name"], t)]
            except Unknown:
                continue  # a loop over a runtime or conditional list (the deploying user's roles)
        for env in envs:
            role = _role_id(_get(body, "properties.roleDefinitionId"), t, env)
            if role in found and is_identity_property(_get(body, "properties.principalId"), t, env):
                found[role].append((t, symbol, body, env))

    problems = []
    for role, (role_name, scope_type) in IDENTITY_ROLES.items():
        if not found[role]:
            problems.append(f"{role_name} ({role}) is not assigned to the app's managed identity")
        for t, symbol, body, env in found[role]:
            scope = body.get("scope")
            scope_resource = t.section("resources").get(scope) if isinstance(scope, str) else None
            if not scope_resource or scope_resource["type"] != scope_type:
                problems.append(f"{t.path.name}: {symbol}: {role_name} must be assigned on a {scope_type}")
            is_guid = _get(body, "name.function.type") == "guid"
            args = list(_get(body, "name.function.parameters").values()) if is_guid else []
            if not (
                len(args) == 3
                and accessor_chain(args[0]) == [scope, "id"]
                and any(is_identity_property(a, t, env) for a in args[1:])
                and any(_role_id(a, t, env) == role for a in args[1:])
            ):
                problems.append(f"{t.path.name}: {symbol}: name must be guid({scope}.id, principalId, roleId)")
    return problems


def _words(name: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name)]


def _looks_secret(name: str) -> bool:
    words = _words(name)
    return bool(words) and (words[-1] in _SECRET_WORDS or words[-2:] == ["connection", "string"])


def _secure_parameters(t: Template) -> set[str]:
    return {
        name for name, p in t.section("parameters").items()
        if any(d.get("type") == "secure" for d in p.get("decorators") or [])
    }


def output_problems(templates: list[Template]) -> list[str]:
    """Outputs land in the deployment history: no name or value that looks like a key, secret or connection string."""
    problems = []
    for t in templates:
        secure = _secure_parameters(t)
        for name, output in t.section("outputs").items():
            text = json.dumps(output["value"])
            if _looks_secret(name):
                problems.append(f"{t.path.name}: output {name}: the name says it holds a secret")
            if _SECRET_VALUE.search(text):
                problems.append(f"{t.path.name}: output {name}: the value reads a key or connection string")
            if any(re.search(rf"\b{re.escape(p)}\b", text) for p in secure):
                problems.append(f"{t.path.name}: output {name}: the value uses a @secure() parameter")
    return problems


def parameter_problems(templates: list[Template]) -> list[str]:
    """A secret-looking parameter must be @secure(); a @secure() parameter has no literal default."""
    problems = []
    for t in templates:
        secure = _secure_parameters(t)
        for name, p in t.section("parameters").items():
            if _looks_secret(name) and name not in secure:
                problems.append(f"{t.path.name}: parameter {name} looks secret but is not @secure()")
            if name in secure and p.get("default") not in (None, ""):
                problems.append(f"{t.path.name}: parameter {name} is @secure() but has a default value")
    return problems


def list_function_problems(root: Path) -> list[str]:
    """listKeys(), listAccountSas() and friends read keys: nothing here may call them, not even in a comment."""
    return [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.bicep"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _LIST_FUNCTION.search(line)
    ]


# ---- app settings ---------------------------------------------------------------------------------------------

def function_app_settings(templates: list[Template]) -> tuple[dict[str, tuple], list[str]]:
    """The function app's app settings: name -> (expression, template, env), gathered through union(), variables,
    parameters and module arguments. Per-tenant settings built with toObject() are dynamic and not listed."""
    configs = [
        (t, body) for t, _, body in declared(templates, "Microsoft.Web/sites/config")
        if _value_or_none(body.get("name"), t) == "appsettings"
    ]
    if len(configs) != 1:
        return {}, [f"expected one Microsoft.Web/sites/config 'appsettings' resource, found {len(configs)}"]
    settings: dict[str, tuple] = {}
    problems: list[str] = []

    def collect(expr, t: Template, env: dict) -> None:
        expr, t, env = resolve(expr, t, env)
        function = expr.get("function") if isinstance(expr, dict) else None
        if function and function["type"] == "union":
            for arg in function["parameters"].values():
                collect(arg, t, env)
        elif function and function["type"] == "toObject":  # per-tenant secrets: each value must be a reference
            value = _get(function, "parameters.arg_3.detail.expression")
            if not (isinstance(value, str) and value.startswith("@Microsoft.KeyVault(")):
                problems.append(f"{t.path.name}: settings built with toObject() must be Key Vault references")
        elif isinstance(expr, dict) and not {"function", "operator", "loop_type"} & set(expr):
            settings.update({_key(k): (v, t, env) for k, v in expr.items()})
        else:
            problems.append(f"{t.path.name}: cannot read app settings from {json.dumps(expr)[:80]}")

    t, body = configs[0]
    collect(body.get("properties"), t, {})
    return settings, problems


def app_setting_problems(templates: list[Template], read_by_code: set[str]) -> list[str]:
    """Every setting the code reads is set (except the local-only ones, which must not be); secrets are Key Vault
    references; and the literal values the template sets are valid for the code's Settings model."""
    settings, problems = function_app_settings(templates)
    problems += [
        f"app setting {name} is read by the code but not set by the template"
        for name in sorted(read_by_code - LOCAL_ONLY_SETTINGS - settings.keys())
    ]
    problems += [
        f"app setting {name} is local-only and must not be set in Azure"
        for name in sorted(LOCAL_ONLY_SETTINGS & settings.keys())
    ]
    literal_values = {}
    for name, (expr, t, env) in settings.items():
        raw = resolve(expr, t, env)[0]
        is_reference = isinstance(raw, str) and raw.startswith("@Microsoft.KeyVault(")
        if _looks_secret(name) and name not in NOT_SECRET_SETTINGS and not is_reference:
            problems.append(f"app setting {name} looks secret but is not a Key Vault reference")
        value = _value_or_none(expr, t, env)
        if name in read_by_code and value is not None:
            literal_values[name] = value
    try:
        Settings.model_validate(literal_values)
    except ValidationError as exc:
        problems += [
            f"app setting {'.'.join(map(str, e['loc']))}={e['input']!r} is invalid for the code: {e['msg']}"
            for e in exc.errors()
        ]
    return problems


def settings_read_by_code() -> set[str]:
    return {f.alias or name for name, f in Settings.model_fields.items()}


def parameters_file_problems(main: Path) -> list[str]:
    """main.parameters.json names only parameters main.bicep declares, and covers those without a default."""
    declared_params = _parse(main.resolve()).get("parameters") or {}
    given = json.loads(main.with_suffix(".parameters.json").read_text())["parameters"]
    problems = [
        f"main.parameters.json sets unknown parameter {name}" for name in sorted(given.keys() - declared_params.keys())
    ]
    problems += [
        f"parameter {name} has no default and is not in main.parameters.json"
        for name, p in sorted(declared_params.items())
        if p.get("default") is None and name not in given
    ]
    return problems


# ---- tests on the real templates ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def templates() -> list[Template]:
    return load(MAIN)


BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


def test_the_templates_exist():
    assert MAIN in BICEP_FILES and len(BICEP_FILES) >= 2


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path):
    assert syntax_problems(path) == []


def test_main_deploys_every_module_file(templates):
    assert {t.path for t in templates} == {p.resolve() for p in BICEP_FILES}


def test_storage_is_locked_down(templates):
    assert storage_problems(templates) == []


def test_identity_has_its_five_roles(templates):
    assert role_assignment_problems(templates) == []


def test_key_vault_uses_rbac(templates):
    assert key_vault_problems(templates) == []


def test_app_insights_local_auth_is_off(templates):
    assert app_insights_problems(templates) == []


def test_function_app_is_flex_python_with_https_only(templates):
    assert function_app_problems(templates) == []


def test_no_secret_in_outputs_or_parameter_defaults(templates):
    assert output_problems(templates) == []
    assert parameter_problems(templates) == []


def test_no_list_keys_anywhere():
    assert list_function_problems(INFRA) == []


def test_every_setting_the_code_reads_is_set(templates):
    read_by_code = settings_read_by_code()
    assert {"FILES_CONTAINER", "TOKEN_SIGNING_KEY", "AzureWebJobsStorage"} <= read_by_code  # the model was read
    assert LOCAL_ONLY_SETTINGS <= read_by_code, "a local-only exception the code no longer reads: drop it"
    assert app_setting_problems(templates, read_by_code) == []


def test_host_and_code_use_the_identity(templates):
    settings, _ = function_app_settings(templates)
    assert _value_or_none(*settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    for name in ("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"):
        assert is_identity_property(*settings[name], prop="clientId"), name
    expr, t, env = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    client_id = re.fullmatch(r"ClientId=\$\{(\w+)\};Authorization=AAD", expr)
    assert client_id and is_identity_property(client_id.group(1), t, env, prop="clientId")


def test_max_dequeue_count_matches_host_json(templates):
    settings, _ = function_app_settings(templates)
    host = json.loads((ROOT / "host.json").read_text())
    host_count = host.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5)  # 5: the host's default
    assert int(_value_or_none(*settings["MAX_DEQUEUE_COUNT"])) == host_count


def test_storage_names_match_the_code_defaults(templates):
    (t, _, _), = [d for d in declared(templates, "Microsoft.Storage/storageAccounts")]
    names = {p: evaluate(p, t) for p in ("containerNames", "queueNames", "tableNames")}
    defaults = Settings.model_construct()
    assert defaults.files_container in names["containerNames"]
    assert names["queueNames"] == list(queue_names(defaults))
    assert names["tableNames"] == [defaults.table_prefix + name for name in TABLE_NAMES]


def test_parameters_file_matches_main():
    assert parameters_file_problems(MAIN) == []


# ---- the same checks fail on broken templates -----------------------------------------------------------------

def test_syntax_errors_are_reported():
    problems = syntax_problems(FIXTURES / "syntax-error.bicep")
    assert any(p.startswith("syntax-error.bicep:") and "pycep" not in p for p in problems), problems
    assert any("pycep-parser" in p for p in problems), problems


@pytest.fixture(scope="module")
def insecure() -> list[Template]:
    return load(FIXTURES / "insecure.bicep")


def test_insecure_storage_is_reported(insecure):
    problems = storage_problems(insecure)
    for prop in ("allowSharedKeyAccess", "supportsHttpsTrafficOnly", "minimumTlsVersion", "allowBlobPublicAccess"):
        assert any(prop in p for p in problems), (prop, problems)


def test_missing_and_misassigned_roles_are_reported(insecure):
    problems = "\n".join(role_assignment_problems(insecure))
    assert "Storage Table Data Contributor" in problems  # not assigned at all
    assert "Key Vault Secrets User" in problems  # assigned to another principal
    assert "Monitoring Metrics Publisher (3913510d" in problems  # only conditionally assigned
    assert "must be assigned on a Microsoft.Storage/storageAccounts" in problems  # queue role on the vault
    assert "name must be guid(" in problems  # blob role named by a fixed string
    assert "Storage Blob Data Owner (" not in problems


def test_key_vault_without_rbac_is_reported(insecure):
    assert any("enableRbacAuthorization" in p for p in key_vault_problems(insecure))


def test_app_insights_local_auth_is_reported(insecure):
    assert any("DisableLocalAuth" in p for p in app_insights_problems(insecure))


def test_function_app_settings_are_reported(insecure):
    problems = "\n".join(function_app_problems(insecure))
    for text in ("httpsOnly", "ftpsState", "minTlsVersion", "runtime.version", "keyVaultReferenceIdentity", "FC1"):
        assert text in problems, (text, problems)


def test_secret_outputs_and_parameters_are_reported(insecure):
    problems = "\n".join(output_problems(insecure) + parameter_problems(insecure))
    assert "output storageConnectionString: the name says it holds a secret" in problems
    assert "output storageConnectionString: the value reads a key" in problems
    assert "output instrumentation: the value reads a key" in problems
    assert "output echo: the value uses a @secure() parameter" in problems
    assert "parameter adminPassword looks secret but is not @secure()" in problems
    assert "parameter signingKey is @secure() but has a default value" in problems
    assert "AZURE_KEY_VAULT_NAME" not in problems


def test_list_keys_is_reported():
    problems = list_function_problems(FIXTURES)
    assert any("insecure.bicep" in p and "listKeys(" in p for p in problems), problems


def test_missing_and_wrong_app_settings_are_reported():
    read_by_code = settings_read_by_code()
    problems = "\n".join(app_setting_problems(load(FIXTURES / "missing-setting" / "main.bicep"), read_by_code))
    assert "app setting BLOCK_SIZE_BYTES is read by the code but not set" in problems
    assert "app setting AzureWebJobsStorage is local-only" in problems
    assert "app setting TOKEN_SIGNING_KEY looks secret but is not a Key Vault reference" in problems
    assert "app setting DOWNLOAD_LINK_MINUTES='0' is invalid" in problems
    assert "settings built with toObject() must be Key Vault references" in problems
    assert "FILES_CONTAINER" not in problems  # set through a module argument and a variable: followed
