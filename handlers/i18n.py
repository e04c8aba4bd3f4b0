"""The app page's texts in English and Brazilian Portuguese, chosen by the LANG Bitrix24 sends.

Bitrix24 passes the portal user's interface language as `LANG` in the app page's query string;
`br` is its code for Brazilian Portuguese (https://apidocs.bitrix24.com/settings/oauth/simple-way.html).
Any other language falls back to English. Both catalogs must hold the same keys (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT = "en"

EN: dict[str, str] = {
    "title": "b24app: lead conversion",
    "signed_in": "User #{user}",
    "role_admin": "administrator",
    "role_reader": "read-only: only a portal administrator can change settings or convert",
    "nav_home": "Overview",
    "mode_heading": "CRM mode",
    "mode_classic": "Classic CRM (with leads)",
    "mode_simple": "Simple CRM (without leads)",
    "mode_now": "This portal uses {mode}.",
    "mode_name_classic": "Classic CRM",
    "mode_name_simple": "Simple CRM",
    "leads_heading": "Active leads by stage",
    "stage": "Stage",
    "leads": "Leads",
    "total": "Total",
    "unknown_count": "?",
    "no_active_stages": "The portal has no active lead stage.",
    "policy_heading": "Conversion policy",
    "policy_intro": "What converting a lead creates, the same options Bitrix24 offers "
    "when it switches to Simple CRM.",
    "client": "Client created with the deal",
    "client_contact": "Contact",
    "client_company": "Company",
    "client_both": "Contact and company",
    "pipeline": "Deal pipeline",
    "pipeline_default": "default",
    "activities": "Open activities of the lead",
    "activities_complete": "Complete them",
    "activities_move": "Keep them open and move them to the deal",
    "match": "Reuse existing clients found by",
    "match_phone": "Phone",
    "match_email": "E-mail",
    "auto_heading": "Automatic conversion",
    "auto_enabled": "Convert new and updated leads automatically",
    "auto_stages": "Only leads in these stages (none ticked: any active stage)",
    "auto_sources": "Only leads from these sources (none ticked: any source)",
    "save": "Save policy",
    "saved": "Policy saved.",
    "saved_by": "Last saved by user {by} on {at}.",
    "problems": "The policy cannot be used:",
    "policy_warnings": "The saved policy no longer fits the portal:",
    "preview_heading": "Preview and conversion",
    "preview_intro": "See what converting would create before anything changes on the portal.",
    "preview_button": "Preview",
    "preview_title": "Preview: what converting would do",
    "preview_none": "No active lead to convert.",
    "preview_more": "Showing {shown} of {total} leads.",
    "lead": "Lead",
    "action": "What happens",
    "creates": "Creates",
    "reuses": "Reuses",
    "activities_col": "Activities",
    "product_rows": "Product rows",
    "skipped_because": "Skipped: {reason}",
    "entity_deal": "deal",
    "entity_contact": "contact",
    "entity_company": "company",
    "moved_n": "{n} moved",
    "completed_n": "{n} completed",
    "convert_all": "All active leads",
    "convert_chosen": "Only these lead ids",
    "convert_ids_hint": "e.g. 12, 15, 40",
    "convert_button": "Convert",
    "convert_chosen_button": "Convert the ticked leads",
    "convert_busy": "Job {job} is still running; wait for it to finish.",
    "bad_ids": "Lead ids must be positive whole numbers separated by commas or spaces.",
    "no_ids": "Tick at least one lead, or enter lead ids.",
    "jobs_heading": "Conversion jobs",
    "jobs_none": "No conversion has run yet.",
    "job": "Job",
    "job_kind": "Started from",
    "kind_app": "app page",
    "kind_switch": "mode switch",
    "kind_convert": "command line",
    "kind_auto": "automatic",
    "kind_sweep": "automatic",
    "status": "Status",
    "created": "Created",
    "converted": "Converted",
    "failed": "Failed",
    "skipped": "Skipped",
    "status_pending": "waiting",
    "status_running": "running",
    "status_done": "done",
    "status_failed": "done with failures",
    "status_interrupted": "interrupted",
    "job_title": "Conversion job {job}",
    "progress": "Progress",
    "progress_text": "{done} of {total} leads",
    "progress_unknown": "{done} leads so far",
    "eta_minutes": "about {minutes} min left",
    "job_error": "Stopped: {error}",
    "report_heading": "Report",
    "download_csv": "Download CSV",
    "deal": "Deal",
    "contact": "Contact",
    "company": "Company",
    "error": "Error",
    "lead_converted": "converted",
    "lead_failed": "failed",
    "lead_skipped": "skipped",
    "lead_pending": "not finished",
    "back": "Back to the overview",
    "switch_heading": "Switch the CRM mode",
    "switch_not_needed": "The portal already uses {target}.",
    "switch_intro": "Bitrix24 REST cannot change the CRM mode: an administrator flips it in "
    "Bitrix24. b24app prepares the portal and checks the result.",
    "switch_step_convert": "Convert the {count} active lead(s) with the policy above, so "
    "Bitrix24 has none left to convert with its own defaults.",
    "switch_step_keep": "Switching to Classic CRM converts nothing: deals, contacts and "
    "companies stay as they are; new leads stay leads from now on.",
    "switch_step_toggle": "In Bitrix24 open CRM > Leads (or CRM > Deals), click the gear "
    '(settings) icon, choose "CRM mode", select "{target}" and save. This needs the CRM '
    "settings permission.",
    "switch_step_verify": "Come back here and check the mode.",
    "switch_convert_button": "Convert the active leads",
    "verify_button": "Check the mode now",
    "verified_ok": "Bitrix24 now reports {mode}.",
    "verified_changed": "The mode changed from {before} to {mode}.",
    "help": "Help",
    "error_title": "b24app cannot open this page",
    "reopen": "Open the app again from the Bitrix24 menu.",
    "err_no_form": "This page opens from inside Bitrix24.",
    "err_not_installed": "b24app is not installed on this portal.",
    "err_auth": "Bitrix24 did not confirm who you are.",
    "err_token": "Your page session is missing or not valid.",
    "err_expired": "Your page session has expired.",
    "err_admin": "Only a portal administrator can do this.",
    "err_portal": "Bitrix24 did not answer as expected ({code}). Try again in a minute.",
    "err_not_found": "There is no such job on this portal.",
}

BR: dict[str, str] = {
    "title": "b24app: conversão de leads",
    "signed_in": "Usuário #{user}",
    "role_admin": "administrador",
    "role_reader": "somente leitura: só um administrador do portal pode mudar as configurações "
    "ou converter",
    "nav_home": "Visão geral",
    "mode_heading": "Modo do CRM",
    "mode_classic": "CRM Clássico (com leads)",
    "mode_simple": "CRM Simples (sem leads)",
    "mode_now": "Este portal usa {mode}.",
    "mode_name_classic": "CRM Clássico",
    "mode_name_simple": "CRM Simples",
    "leads_heading": "Leads ativos por etapa",
    "stage": "Etapa",
    "leads": "Leads",
    "total": "Total",
    "unknown_count": "?",
    "no_active_stages": "O portal não tem etapa de lead ativa.",
    "policy_heading": "Política de conversão",
    "policy_intro": "O que a conversão de um lead cria: as mesmas opções que o Bitrix24 oferece "
    "ao mudar para o CRM Simples.",
    "client": "Cliente criado com o negócio",
    "client_contact": "Contato",
    "client_company": "Empresa",
    "client_both": "Contato e empresa",
    "pipeline": "Pipeline de negócios",
    "pipeline_default": "padrão",
    "activities": "Atividades abertas do lead",
    "activities_complete": "Concluí-las",
    "activities_move": "Mantê-las abertas e movê-las para o negócio",
    "match": "Reutilizar clientes existentes encontrados por",
    "match_phone": "Telefone",
    "match_email": "E-mail",
    "auto_heading": "Conversão automática",
    "auto_enabled": "Converter automaticamente leads novos e atualizados",
    "auto_stages": "Só leads nestas etapas (nenhuma marcada: qualquer etapa ativa)",
    "auto_sources": "Só leads destas origens (nenhuma marcada: qualquer origem)",
    "save": "Salvar política",
    "saved": "Política salva.",
    "saved_by": "Salva por último pelo usuário {by} em {at}.",
    "problems": "A política não pode ser usada:",
    "policy_warnings": "A política salva não combina mais com o portal:",
    "preview_heading": "Prévia e conversão",
    "preview_intro": "Veja o que a conversão criaria antes de qualquer mudança no portal.",
    "preview_button": "Prévia",
    "preview_title": "Prévia: o que a conversão faria",
    "preview_none": "Nenhum lead ativo para converter.",
    "preview_more": "Mostrando {shown} de {total} leads.",
    "lead": "Lead",
    "action": "O que acontece",
    "creates": "Cria",
    "reuses": "Reutiliza",
    "activities_col": "Atividades",
    "product_rows": "Produtos",
    "skipped_because": "Ignorado: {reason}",
    "entity_deal": "negócio",
    "entity_contact": "contato",
    "entity_company": "empresa",
    "moved_n": "{n} movida(s)",
    "completed_n": "{n} concluída(s)",
    "convert_all": "Todos os leads ativos",
    "convert_chosen": "Só estes IDs de lead",
    "convert_ids_hint": "ex.: 12, 15, 40",
    "convert_button": "Converter",
    "convert_chosen_button": "Converter os leads marcados",
    "convert_busy": "O trabalho {job} ainda está em andamento; aguarde o término.",
    "bad_ids": "Os IDs de lead devem ser números inteiros positivos separados por vírgulas "
    "ou espaços.",
    "no_ids": "Marque pelo menos um lead ou informe IDs de lead.",
    "jobs_heading": "Trabalhos de conversão",
    "jobs_none": "Nenhuma conversão foi executada ainda.",
    "job": "Trabalho",
    "job_kind": "Iniciado por",
    "kind_app": "página do app",
    "kind_switch": "mudança de modo",
    "kind_convert": "linha de comando",
    "kind_auto": "automático",
    "kind_sweep": "automático",
    "status": "Situação",
    "created": "Criado em",
    "converted": "Convertidos",
    "failed": "Com falha",
    "skipped": "Ignorados",
    "status_pending": "aguardando",
    "status_running": "em andamento",
    "status_done": "concluído",
    "status_failed": "concluído com falhas",
    "status_interrupted": "interrompido",
    "job_title": "Trabalho de conversão {job}",
    "progress": "Progresso",
    "progress_text": "{done} de {total} leads",
    "progress_unknown": "{done} leads até agora",
    "eta_minutes": "cerca de {minutes} min restantes",
    "job_error": "Parado: {error}",
    "report_heading": "Relatório",
    "download_csv": "Baixar CSV",
    "deal": "Negócio",
    "contact": "Contato",
    "company": "Empresa",
    "error": "Erro",
    "lead_converted": "convertido",
    "lead_failed": "com falha",
    "lead_skipped": "ignorado",
    "lead_pending": "não concluído",
    "back": "Voltar à visão geral",
    "switch_heading": "Mudar o modo do CRM",
    "switch_not_needed": "O portal já usa {target}.",
    "switch_intro": "A API REST do Bitrix24 não muda o modo do CRM: um administrador o altera "
    "no Bitrix24. O b24app prepara o portal e confere o resultado.",
    "switch_step_convert": "Converta o(s) {count} lead(s) ativo(s) com a política acima, para "
    "que o Bitrix24 não converta nenhum com as próprias opções padrão.",
    "switch_step_keep": "Mudar para o CRM Clássico não converte nada: negócios, contatos e "
    "empresas ficam como estão; novos leads continuam leads a partir de agora.",
    "switch_step_toggle": "No Bitrix24, abra CRM > Leads (ou CRM > Negócios), clique no ícone "
    'de engrenagem (configurações), escolha "Modo do CRM", selecione "{target}" e salve. '
    "É preciso a permissão de configurações do CRM.",
    "switch_step_verify": "Volte aqui e confira o modo.",
    "switch_convert_button": "Converter os leads ativos",
    "verify_button": "Conferir o modo agora",
    "verified_ok": "O Bitrix24 agora informa {mode}.",
    "verified_changed": "O modo mudou de {before} para {mode}.",
    "help": "Ajuda",
    "error_title": "O b24app não pode abrir esta página",
    "reopen": "Abra o app novamente pelo menu do Bitrix24.",
    "err_no_form": "Esta página é aberta de dentro do Bitrix24.",
    "err_not_installed": "O b24app não está instalado neste portal.",
    "err_auth": "O Bitrix24 não confirmou quem você é.",
    "err_token": "A sessão desta página está ausente ou não é válida.",
    "err_expired": "A sessão desta página expirou.",
    "err_admin": "Só um administrador do portal pode fazer isso.",
    "err_portal": "O Bitrix24 não respondeu como esperado ({code}). Tente novamente em um minuto.",
    "err_not_found": "Não existe esse trabalho neste portal.",
}

CATALOGS: dict[str, dict[str, str]] = {"en": EN, "br": BR}
# Language tags some callers use for the same catalog (Bitrix24 itself sends `br`).
_ALIASES = {"pt": "br", "pt-br": "br", "pt_br": "br"}
# The `lang` attribute of the page's <html> element, per catalog.
HTML_LANG = {"en": "en", "br": "pt-BR"}


def language(lang: str | None) -> str:
    """The catalog for a Bitrix24 LANG value: "br" for Brazilian Portuguese, else "en"."""
    code = (lang or "").strip().lower()
    code = _ALIASES.get(code, code)
    return code if code in CATALOGS else DEFAULT


def known(key: str) -> bool:
    """Whether the catalogs have a text for `key` (job kinds come from outside the page)."""
    return key in EN


def translator(lang: str | None) -> Callable[..., str]:
    """`_(key, **values)` for the language: the catalog's text, formatted with `values`."""
    catalog = CATALOGS[language(lang)]

    def translate(key: str, **values: Any) -> str:
        text = catalog.get(key) or EN.get(key) or key
        return text.format(**values) if values else text

    return translate
