#!/usr/bin/env python3
"""Generates the pagonode XSD fixture corpus: xsd-fixtures/{valid,invalid}/*.xml + manifest.tsv.

    python3 xsd-fixtures/generate.py            # (re)write every fixture and the manifest
    python3 xsd-fixtures/generate.py --check    # ...then run the oracle, libxml2 and pagonode

The generator is deterministic: the same script always writes the same bytes. Every fixture is
declared below with what pagonode must say (`verdict`), the rule it breaks, the element the codec
must blame (`field`), and what the official-XSD oracle and plain libxml2 are expected to say. With
--check those two expectations are verified by running the oracle (`xsd-check`, path from
$XSD_CHECK, default /work/shared/tools/xsd-check) in-process, and pagonode's verdict and field are
verified by running `pagonode validate` over the corpus. Any disagreement fails the run.

Dev tool only: the Rust test (tests/xsd_fixtures.rs) reads the files and the manifest, never this.
"""
import argparse
import base64
import copy
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NS_SOAP = 'http://schemas.xmlsoap.org/soap/envelope/'
NS_SOAP12 = 'http://www.w3.org/2003/05/soap-envelope'
NS = {'nfp': 'http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd',
      'pafn': 'http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd'}
# The WSDL target namespaces: a classic mistake for the payload namespace.
WSDL_NS = {'nfp': 'http://pagopa-api.pagopa.gov.it/nodeForPsp',
           'pafn': 'http://pagopa-api.pagopa.gov.it/paForNode'}
XSI = 'http://www.w3.org/2001/XMLSchema-instance'
NS_TA = 'http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto'
NS_PP = 'http://PuntoAccessoPSP.spcoop.gov.it/pagamentoPratica'
NS_PC = 'http://PuntoAccessoPSP.spcoop.gov.it/praticaPagamentoCanoni'
NS_CS = 'http://pagopa-api.pagopa.gov.it/nodeForPsp/xsd/CatalogoServizi'

FAULT_PSP = 'PPT_SINTASSI_EXTRAXSD'
FAULT_EC = 'PPT_STAZIONE_INT_PA_ERRORE_RESPONSE'

# --------------------------------------------------------------------------------------------
# Payload trees
# --------------------------------------------------------------------------------------------


class Raw(str):
    """Text written as is (entities, CDATA, comments, stray character data)."""


class N:
    """An element: `val` is text (str/Raw), a list of children (N or Raw), or None (`<x/>`)."""

    def __init__(self, name, val=None, attrs=()):
        self.name, self.val, self.attrs = name, val, list(attrs)

    def __repr__(self):
        return f'N({self.name!r})'


def esc(s):
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def ser(node, depth, out):
    ind = '  ' * depth
    if isinstance(node, Raw):
        out.append(f'{ind}{node}\n')
        return
    a = ''.join(f' {k}="{v}"' for k, v in node.attrs)
    if node.val is None:
        out.append(f'{ind}<{node.name}{a}/>\n')
    elif isinstance(node.val, list):
        if not node.val:
            out.append(f'{ind}<{node.name}{a}></{node.name}>\n')
            return
        out.append(f'{ind}<{node.name}{a}>\n')
        for k in node.val:
            ser(k, depth + 1, out)
        out.append(f'{ind}</{node.name}>\n')
    else:
        txt = node.val if isinstance(node.val, Raw) else esc(node.val)
        out.append(f'{ind}<{node.name}{a}>{txt}</{node.name}>\n')


def _seg(seg):
    m = re.fullmatch(r'([^\[]+)(?:\[(\d+)\])?', seg)
    return m.group(1), int(m.group(2) or 1)


def find(kids, path):
    """(list, index) of the element at `path` (`a/b[2]/c`, 1-based indexes)."""
    cur = kids
    segs = path.split('/')
    for i, seg in enumerate(segs):
        name, k = _seg(seg)
        hits = [j for j, n in enumerate(cur) if isinstance(n, N) and n.name == name]
        if len(hits) < k:
            raise KeyError(f'{path}: no {seg}')
        j = hits[k - 1]
        if i == len(segs) - 1:
            return cur, j
        cur = cur[j].val


def children(kids, path):
    if not path:
        return kids
    lst, j = find(kids, path)
    return lst[j].val


# Tree operations: each returns a function that mutates the payload's child list in place.
def set_(path, val):
    def f(kids):
        lst, j = find(kids, path)
        lst[j].val = val
    return f


def rm(path):
    def f(kids):
        lst, j = find(kids, path)
        del lst[j]
    return f


def ins_after(path, *nodes):
    def f(kids):
        lst, j = find(kids, path)
        lst[j + 1:j + 1] = [copy.deepcopy(n) for n in nodes]
    return f


def ins_before(path, *nodes):
    def f(kids):
        lst, j = find(kids, path)
        lst[j:j] = [copy.deepcopy(n) for n in nodes]
    return f


def append(path, *nodes):
    def f(kids):
        children(kids, path).extend(copy.deepcopy(n) for n in nodes)
    return f


def rename(path, new):
    def f(kids):
        lst, j = find(kids, path)
        lst[j].name = new
    return f


def dup(path, total=2):
    def f(kids):
        lst, j = find(kids, path)
        lst[j + 1:j + 1] = [copy.deepcopy(lst[j]) for _ in range(total - 1)]
    return f


def repeat(path, total, adjust=None):
    """Grows the run of `path` elements to `total` copies of the first (adjust(i, node))."""
    def f(kids):
        lst, j = find(kids, path)
        name = lst[j].name
        end = j
        while end + 1 < len(lst) and isinstance(lst[end + 1], N) and lst[end + 1].name == name:
            end += 1
        run = [copy.deepcopy(lst[j]) for _ in range(total)]
        for i, n in enumerate(run):
            if adjust:
                adjust(i, n)
        lst[j:end + 1] = run
    return f


def swap(p1, p2):
    def f(kids):
        l1, j1 = find(kids, p1)
        l2, j2 = find(kids, p2)
        assert l1 is l2
        l1[j1], l1[j2] = l1[j2], l1[j1]
    return f


def attr(path, k, v):
    def f(kids):
        lst, j = find(kids, path)
        lst[j].attrs.append((k, v))
    return f


def ops(*fs):
    def f(kids):
        for g in fs:
            g(kids)
    return f


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

def b64(s):
    return base64.b64encode(s.encode('utf-8')).decode('ascii')


TASSA = (f'<ta:tassaAuto xmlns:ta="{NS_TA}"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga>'
         '<ta:veicoloTarga>AB123CD</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>')
A001 = (f'<pp:pagamentoPratica xmlns:pp="{NS_PP}"><pp:codicePratica>A001</pp:codicePratica>'
        '<pp:pagatore><pp:codiceFiscalePagatore>RSSMRA80A01H501U</pp:codiceFiscalePagatore>'
        '<pp:denominazionePagatore>Mario Rossi</pp:denominazionePagatore></pp:pagatore>'
        '<pp:intestatario><pp:codiceFiscaleIntestatario>RSSLCU10A41H501X</pp:codiceFiscaleIntestatario>'
        '<pp:denominazioneIntestatario>Lucia Rossi</pp:denominazioneIntestatario></pp:intestatario>'
        '</pp:pagamentoPratica>')
D847 = (f'<pc:praticaPagamentoCanoni xmlns:pc="{NS_PC}"><pc:codicePratica>D847</pc:codicePratica>'
        '<pc:pagatore><pc:codiceFiscalePagatore>RSSMRA80A01H501U</pc:codiceFiscalePagatore>'
        '<pc:denominazionePagatore>Mario Rossi</pc:denominazionePagatore></pc:pagatore>'
        '<pc:intestatario><pc:codiceFiscaleIntestatario>RSSMRA80A01H501U</pc:codiceFiscaleIntestatario>'
        '<pc:denominazioneIntestatario>Mario Rossi</pc:denominazioneIntestatario></pc:intestatario>'
        '<pc:note><pc:note>Licenza di pesca tipo B, anno 2030</pc:note></pc:note>'
        '</pc:praticaPagamentoCanoni>')


def tassa(tipo='1', targa='AB123CD'):
    return TASSA.replace('>1<', f'>{tipo}<').replace('>AB123CD<', f'>{targa}<')


def catalogo():
    def svc(ids, desc, sogg, dom, ente, cat, xsd):
        return (f'<catalogoServizi><idServizio>{ids}</idServizio><descrizioneServizio>{desc}</descrizioneServizio>'
                f'<elencoSoggettiEroganti><soggettoErogante><idSoggettoServizio>{sogg}</idSoggettoServizio>'
                f'<idDominio>{dom}</idDominio><denominazioneEnteCreditore>{ente}</denominazioneEnteCreditore>'
                f'<dataInizioValidita>2024-01-01</dataInizioValidita><dataFineValidita>2099-12-31</dataFineValidita>'
                f'<commissione>N</commissione></soggettoErogante></elencoSoggettiEroganti>'
                f'<categoria>{cat}</categoria><xsdRiferimento>{xsd}</xsdRiferimento></catalogoServizi>')
    return (f'<cs:listaCatalogoServizi xmlns:cs="{NS_CS}">'
            + svc('00001', 'Tassa automobilistica', '00042', '77777777777', 'Regione Esempio', 'Tributi',
                  'TassaAutomobilistica_1_1_0')
            + svc('00002', 'Passaporto', '00043', '77777777777', 'Questura di Esempio', 'Documenti',
                  'A001_Passaporto_1_0_0')
            + svc('00003', 'Licenza di pesca', '00044', '77777777777', 'Regione Esempio', 'Licenze',
                  'D847_Pesca_1_0_0')
            + '</cs:listaCatalogoServizi>')


MBD_XML = ('<marcaDaBollo xmlns="http://www.agenziaentrate.gov.it/2014/MarcaDaBollo">'
           '<PSP><CodiceFiscale>60000000001</CodiceFiscale><Denominazione>PSP di Esempio</Denominazione></PSP>'
           '<IUBD>01234567890123</IUBD><OraAcquisto>2030-01-15T10:20:30</OraAcquisto><Importo>16.00</Importo>'
           '<TipoBollo>01</TipoBollo><ImprontaDocumento><DigestValue>'
           + base64.b64encode(hashlib.sha256(b'documento').digest()).decode()
           + '</DigestValue></ImprontaDocumento></marcaDaBollo>')
MBD = b64(MBD_XML)
HASH = base64.b64encode(hashlib.sha256(b'documento').digest()).decode()  # 44 chars
HASH72 = base64.b64encode(bytes(range(54))).decode()  # 72 chars
HASH76 = base64.b64encode(bytes(range(57))).decode()  # 76 chars
TOKEN = 'c110729d258c4ab1b765fe902aae41d6'
TOKENS = [TOKEN, '0a1b2c3d4e5f60718293a4b5c6d7e8f9', 'f00dbabe000000000000000000000001',
          'f00dbabe000000000000000000000002', 'f00dbabe000000000000000000000003']
UUID36 = 'c110729d-258c-4ab1-b765-fe902aae41d6'

ACCENTS = 'Società Agricola Forlì Cantù Città Perché Più Caffè Né Là '


def acc(n):
    """n characters (code points) of accented Italian text, no trailing space."""
    s = (ACCENTS * (n // len(ACCENTS) + 2))[:n]
    return s[:-1] + 'à' if s.endswith(' ') else s


def ascii_n(n, c='x'):
    return c * n


# --------------------------------------------------------------------------------------------
# The messages
# --------------------------------------------------------------------------------------------

def auth():
    return [N('idPSP', '60000000001'), N('idBrokerPSP', '60000000001'), N('idChannel', '60000000001_01'),
            N('password', 'pwdpwdpwd')]


def pa_block():
    return [N('idPA', '77777777777'), N('idBrokerPA', '77777777777'), N('idStation', '77777777777_01')]


def qr(notice='302000100000009424'):
    return N('qrCode', [N('fiscalCode', '77777777777'), N('noticeNumber', notice)])


def subject(tag, full=True):
    kids = [N('uniqueIdentifier', [N('entityUniqueIdentifierType', 'F'),
                                   N('entityUniqueIdentifierValue', 'RSSMRA80A01H501U')]),
            N('fullName', 'Mario Rossi')]
    if full:
        kids += [N('streetName', 'Via Roma'), N('civicNumber', '1'), N('postalCode', '00100'), N('city', 'Roma'),
                 N('stateProvinceRegion', 'RM'), N('country', 'IT'), N('e-mail', 'mario.rossi@example.it')]
    return N(tag, kids)


def fault(code='PPT_ERRORE_EMESSO_DA_PAA', ident='NodoDeiPagamentiSPC', full=True):
    kids = [N('faultCode', code), N('faultString', 'Errore restituito dall\'ente creditore'), N('id', ident)]
    if full:
        kids += [N('description', 'Pagamento sconosciuto'), N('serial', '1'),
                 N('originalFaultCode', 'PAA_PAGAMENTO_SCONOSCIUTO'),
                 N('originalFaultString', 'Pagamento in attesa risulta sconosciuto all\'Ente Creditore'),
                 N('originalDescription', 'IUV sconosciuto')]
    return N('fault', kids)


def metadata(n=2):
    return N('metadata', [N('mapEntry', [N('key', f'chiave{i}'), N('value', f'valore{i}')]) for i in range(1, n + 1)])


def stamp():
    return N('richiestaMarcaDaBollo', [N('hashDocumento', HASH), N('tipoBollo', '01'), N('provinciaResidenza', 'RM')])


def psp_option(amount='10.00', full=True):
    kids = [N('amount', amount), N('options', 'EQ')]
    if full:
        kids += [N('dueDate', '2030-12-31'), N('paymentNote', 'Rata unica')]
    return N('paymentOptionDescription', kids)


def pa_option(amount='10.00', full=True):
    kids = [N('amount', amount), N('options', 'EQ')]
    if full:
        kids += [N('dueDate', '2030-12-31'), N('detailDescription', 'Rata unica')]
    kids.append(N('allCCP', 'false'))
    return N('paymentOptionDescription', kids)


def transfer_psp(i=1, amount='10.00'):
    return N('transfer', [N('idTransfer', str(i)), N('transferAmount', amount), N('fiscalCodePA', '77777777777'),
                          N('IBAN', 'IT60X0542811101000000123456'), N('remittanceInformation', 'Mensa scolastica'),
                          metadata(1)])


def transfer_psp_v2(i=1, amount='10.00', account='iban'):
    kids = [N('idTransfer', str(i)), N('transferAmount', amount), N('fiscalCodePA', '77777777777'),
            N('companyName', 'Comune di Esempio')]
    if account == 'iban':
        kids.append(N('IBAN', 'IT60X0542811101000000123456'))
    elif account == 'stamp':
        kids.append(stamp())
    kids += [N('remittanceInformation', 'Mensa scolastica'), N('transferCategory', '0101101IM'), metadata(1)]
    return N('transfer', kids)


def transfer_pa(i=1, amount='10.00', v2=None):
    kids = [N('idTransfer', str(i)), N('transferAmount', amount), N('fiscalCodePA', '77777777777')]
    if v2:
        kids.append(N('companyName', 'Comune di Esempio'))
    if v2 == 'stamp':
        kids.append(stamp())
    elif v2 == 'mbd':
        kids.append(N('MBDAttachment', MBD))
    else:
        kids.append(N('IBAN', 'IT60X0542811101000000123456'))
    kids += [N('remittanceInformation', 'Mensa scolastica'), N('transferCategory', '0101101IM'), metadata(1)]
    return N('transfer', kids)


def payment_data(v2):
    kids = [N('creditorReferenceId', '02000100000009424'), N('paymentAmount', '10.00'), N('dueDate', '2030-12-31'),
            N('retentionDate', '2031-12-31T23:59:59'), N('lastPayment', 'true'),
            N('description', 'Canone mensa scolastica'), N('companyName', 'Comune di Esempio'),
            N('officeName', 'Ufficio tributi'), subject('debtor'),
            N('transferList', [transfer_pa(1, '10.00', 'iban' if v2 else None)]), metadata(2)]
    return N('data', kids)


def receipt(v2):
    kids = [N('receiptId', TOKEN), N('noticeNumber', '302000100000009424'), N('fiscalCode', '77777777777'),
            N('outcome', 'OK'), N('creditorReferenceId', '02000100000009424'), N('paymentAmount', '10.00'),
            N('description', 'Canone mensa scolastica'), N('companyName', 'Comune di Esempio'),
            N('officeName', 'Ufficio tributi'), subject('debtor'),
            N('transferList', [transfer_pa(1, '10.00', 'iban' if v2 else None)]),
            N('idPSP', '60000000001'), N('pspFiscalCode', '60000000001'), N('pspPartitaIVA', 'IT60000000001'),
            N('PSPCompanyName', 'PSP di Esempio S.p.A.'), N('idChannel', '60000000001_01'),
            N('channelDescription', 'app'), subject('payer'),
            N('paymentMethod', 'CP' if v2 else 'creditCard')]
    if v2:
        kids.append(N('paymentNote', 'Pagamento mensa'))
    kids.append(N('fee', '1.00'))
    if v2:
        kids += [N('primaryCiIncurredFee', '0.50'), N('idBundle', 'bundle-1'), N('idCiBundle', 'ci-bundle-1')]
    kids += [N('paymentDateTime', '2030-01-15T10:20:30'), N('applicationDate', '2030-01-15'),
             N('transferDate', '2030-01-16'), metadata(2), N('standIn', 'false')]
    return N('receipt', kids)


def receipt_min(v2):
    return N('receipt', [N('receiptId', TOKEN), N('noticeNumber', '302000100000009424'), N('fiscalCode', '77777777777'),
                         N('outcome', 'OK'), N('creditorReferenceId', '02000100000009424'),
                         N('paymentAmount', '10.00'), N('description', 'Canone mensa scolastica'),
                         N('companyName', 'Comune di Esempio'), subject('debtor', full=False),
                         N('transferList', [N('transfer', [
                             N('idTransfer', '1'), N('transferAmount', '10.00'), N('fiscalCodePA', '77777777777'),
                             N('IBAN', 'IT60X0542811101000000123456'),
                             N('remittanceInformation', 'Mensa scolastica'), N('transferCategory', '0101101IM')])]),
                         N('idPSP', '60000000001'), N('PSPCompanyName', 'PSP di Esempio S.p.A.'),
                         N('idChannel', '60000000001_01'), N('channelDescription', 'app')])


def details(v2):
    kids = [N('paymentMethod', 'creditCard'), N('paymentChannel', 'app'), N('fee', '1.00')]
    if v2:
        kids += [N('primaryCiIncurredFee', '0.50'), N('idBundle', 'bundle-1'), N('idCiBundle', 'ci-bundle-1')]
    kids += [subject('payer'), N('applicationDate', '2030-01-15'), N('transferDate', '2030-01-16')]
    if v2:
        kids.append(N('marcheDaBollo', [N('marcaDaBollo', [N('paymentToken', TOKEN), N('idTransfer', '1'),
                                                            N('MBDAttachment', MBD)])]))
    return N('details', kids)


def set_id(i, n):
    for k in n.val:
        if isinstance(k, N) and k.name == 'idTransfer':
            k.val = str(i + 1)


def set_key(i, n):
    n.val[0].val = f'chiave{i + 1}'
    n.val[1].val = f'valore{i + 1}'


def set_token(i, n):
    n.val = TOKENS[i % 5][:-2] + f'{i:02d}'


def set_mbd(i, n):
    n.val[0].val = TOKENS[i % 5]
    n.val[1].val = str(i // 5 + 1)


def set_option(i, n):
    n.val[0].val = f'{10 * (i + 1)}.00'


class Msg:
    def __init__(self, root, iface, direction, minimal, typical, maximal=None, legacy=False):
        self.root, self.iface, self.direction = root, iface, direction
        self.minimal, self.typical = minimal, typical
        self.maximal = maximal  # ops growing `typical` to max cardinalities
        self.legacy = legacy

    @property
    def fault(self):
        if self.iface == 'nfp' and self.direction == 'req':
            return FAULT_PSP
        if self.iface == 'pafn' and self.direction == 'res':
            return FAULT_EC
        return '-'

    def tree(self, variant):
        if variant == 'min':
            return self.minimal()
        kids = self.typical()
        if variant == 'max' and self.maximal:
            self.maximal(kids)
        return kids


def ok():
    return [N('outcome', 'OK')]


def resp(*business):
    return lambda: [N('outcome', 'OK'), fault()] + [copy.deepcopy(b) for b in business]


MESSAGES = [
    # ---- nodeForPsp ----
    Msg('demandPaymentNoticeRequest', 'nfp', 'req',
        lambda: auth() + [N('idSoggettoServizio', '00042'), N('datiSpecificiServizio', b64(TASSA))],
        lambda: auth() + [N('idSoggettoServizio', '00042'), N('datiSpecificiServizio', b64(TASSA))]),
    Msg('demandPaymentNoticeResponse', 'nfp', 'res', ok,
        resp(qr(), N('paymentList', [psp_option('120.00')]), N('paymentDescription', 'Tassa automobilistica AB123CD'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Regione Esempio'), N('officeName', 'Ufficio tributi')),
        repeat('paymentList/paymentOptionDescription', 5, set_option)),
    Msg('verifyPaymentNoticeReq', 'nfp', 'req', lambda: auth() + [qr()], lambda: auth() + [qr()]),
    Msg('verifyPaymentNoticeRes', 'nfp', 'res', ok,
        resp(N('paymentList', [psp_option()]), N('paymentDescription', 'Canone mensa scolastica'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Comune di Esempio'),
             N('officeName', 'Ufficio scuola'), N('standin', 'false')),
        repeat('paymentList/paymentOptionDescription', 5, set_option)),
    Msg('activatePaymentNoticeReq', 'nfp', 'req',
        lambda: auth() + [qr(), N('amount', '10.00')],
        lambda: auth() + [N('idempotencyKey', '60000000001_a1B2c3D4e5'), qr(), N('expirationTime', '1800000'),
                          N('amount', '10.00'), N('dueDate', '2030-12-31'), N('paymentNote', 'Mensa scolastica')]),
    Msg('activatePaymentNoticeRes', 'nfp', 'res', ok,
        resp(N('totalAmount', '10.00'), N('paymentDescription', 'Canone mensa scolastica'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Comune di Esempio'), N('officeName', 'Ufficio scuola'),
             N('paymentToken', TOKEN), N('transferList', [transfer_psp()]),
             N('creditorReferenceId', '02000100000009424'), N('standin', 'false')),
        ops(repeat('transferList/transfer', 5, set_id), repeat('transferList/transfer/metadata/mapEntry', 15, set_key))),
    Msg('activatePaymentNoticeV2Request', 'nfp', 'req',
        lambda: auth() + [qr(), N('amount', '10.00')],
        lambda: auth() + [N('idempotencyKey', '60000000001_a1B2c3D4e6'), qr(), N('expirationTime', '60000'),
                          N('amount', '10.00'), N('dueDate', '2030-12-31'), N('paymentNote', 'Mensa scolastica'),
                          N('paymentMethod', 'CP'), N('touchPoint', 'PSP')]),
    Msg('activatePaymentNoticeV2Response', 'nfp', 'res', ok,
        resp(N('totalAmount', '26.00'), N('paymentDescription', 'Canone e marca da bollo'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Comune di Esempio'), N('officeName', 'Ufficio scuola'),
             N('paymentToken', TOKEN),
             N('transferList', [transfer_psp_v2(1, '10.00', 'iban'), transfer_psp_v2(2, '16.00', 'stamp')]),
             metadata(2), N('creditorReferenceId', '02000100000009424'), N('suggestedUserFee', '1.00'),
             N('suggestedPaFee', '0.50'), N('suggestedIdBundle', 'bundle-1'), N('suggestedIdCiBundle', 'ci-bundle-1'),
             N('allCCP', 'false'), N('standin', 'false')),
        ops(repeat('transferList/transfer', 5, set_id), repeat('metadata/mapEntry', 15, set_key))),
    Msg('sendPaymentOutcomeReq', 'nfp', 'req',
        lambda: auth() + [N('paymentToken', TOKEN), N('outcome', 'KO')],
        lambda: auth() + [N('idempotencyKey', '60000000001_f6G7h8I9j0'), N('paymentToken', TOKEN), N('outcome', 'OK'),
                          details(False)]),
    Msg('sendPaymentOutcomeRes', 'nfp', 'res', ok, resp()),
    Msg('sendPaymentOutcomeV2Request', 'nfp', 'req',
        lambda: auth() + [N('paymentTokens', [N('paymentToken', TOKEN)]), N('outcome', 'KO')],
        lambda: auth() + [N('idempotencyKey', '60000000001_f6G7h8I9j1'), N('paymentTokens', [N('paymentToken', TOKEN)]),
                          N('outcome', 'OK'), details(True)],
        ops(repeat('paymentTokens/paymentToken', 5, set_token),
            repeat('details/marcheDaBollo/marcaDaBollo', 25, set_mbd))),
    Msg('sendPaymentOutcomeV2Response', 'nfp', 'res', ok, resp()),
    Msg('nodoChiediCatalogoServiziV2Request', 'nfp', 'req',
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd')],
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd'),
                 N('identificativoDominio', '77777777777'), N('categoria', 'Tributi'), N('commissione', 'N')]),
    Msg('nodoChiediCatalogoServiziV2Response', 'nfp', 'res', ok,
        resp(N('xmlCatalogoServizi', b64(catalogo())))),
    # ---- paForNode ----
    Msg('paDemandPaymentNoticeRequest', 'pafn', 'req',
        lambda: pa_block() + [N('idServizio', '00001'), N('idSoggettoServizio', '00042'),
                              N('datiSpecificiServizioRequest', b64(TASSA))],
        lambda: pa_block() + [N('idServizio', '00001'), N('idSoggettoServizio', '00042'),
                              N('datiSpecificiServizioRequest', b64(TASSA))]),
    Msg('paDemandPaymentNoticeResponse', 'pafn', 'res', ok,
        resp(qr(), N('paymentList', [pa_option('120.00')]), N('paymentDescription', 'Tassa automobilistica AB123CD'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Regione Esempio'), N('officeName', 'Ufficio tributi'))),
    Msg('paVerifyPaymentNoticeReq', 'pafn', 'req', lambda: pa_block() + [qr()], lambda: pa_block() + [qr()]),
    Msg('paVerifyPaymentNoticeRes', 'pafn', 'res', ok,
        resp(N('paymentList', [pa_option()]), N('paymentDescription', 'Canone mensa scolastica'),
             N('fiscalCodePA', '77777777777'), N('companyName', 'Comune di Esempio'), N('officeName', 'Ufficio scuola'))),
    Msg('paGetPaymentReq', 'pafn', 'req', lambda: pa_block() + [qr()],
        lambda: pa_block() + [qr(), N('amount', '10.00'), N('paymentNote', 'Mensa scolastica'),
                              N('transferType', 'PAGOPA'), N('dueDate', '2030-12-31')]),
    Msg('paGetPaymentRes', 'pafn', 'res', ok, resp(payment_data(False)),
        ops(repeat('data/transferList/transfer', 5, set_id), repeat('data/metadata/mapEntry', 15, set_key))),
    Msg('paGetPaymentV2Request', 'pafn', 'req', lambda: pa_block() + [qr()],
        lambda: pa_block() + [qr(), N('amount', '10.00'), N('paymentNote', 'Mensa scolastica'),
                              N('transferType', 'PAGOPA'), N('dueDate', '2030-12-31')]),
    Msg('paGetPaymentV2Response', 'pafn', 'res', ok, resp(payment_data(True)),
        ops(repeat('data/transferList/transfer', 5, set_id), repeat('data/metadata/mapEntry', 15, set_key))),
    Msg('paSendRTReq', 'pafn', 'req', lambda: pa_block() + [receipt_min(False)],
        lambda: pa_block() + [receipt(False)],
        ops(repeat('receipt/transferList/transfer', 5, set_id), repeat('receipt/metadata/mapEntry', 15, set_key))),
    Msg('paSendRTRes', 'pafn', 'res', ok, resp()),
    Msg('paSendRTV2Request', 'pafn', 'req', lambda: pa_block() + [receipt_min(True)],
        lambda: pa_block() + [receipt(True)],
        ops(repeat('receipt/transferList/transfer', 5, set_id), repeat('receipt/metadata/mapEntry', 15, set_key))),
    Msg('paSendRTV2Response', 'pafn', 'res', ok, resp()),
    # ---- legacy nodeForPsp (read and checked by the codec, not served) ----
    Msg('verificaBollettinoReq', 'nfp', 'req',
        lambda: auth() + [N('ccPost', '012345678901'), N('noticeNumber', '302000100000009424')],
        lambda: auth() + [N('ccPost', '012345678901'), N('noticeNumber', '302000100000009424')], legacy=True),
    Msg('verificaBollettinoRes', 'nfp', 'res', ok,
        resp(N('paymentBollettinoList', [N('paymentOptionDescription', [
            N('amount', '10.00'), N('options', 'EQ'), N('dueDate', '2030-12-31'), N('paymentNote', 'Rata unica'),
            N('allCCP', 'true')])]),
            N('paymentDescription', 'Canone'), N('fiscalCodePA', '77777777777'),
            N('noticeNumber', '302000100000009424'), N('companyName', 'Comune di Esempio'),
            N('officeName', 'Ufficio scuola')), legacy=True),
    Msg('nodoInviaFlussoRendicontazioneRequest', 'nfp', 'req',
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd'),
                 N('identificativoDominio', '77777777777'), N('identificativoFlusso', '2030-01-16PSP60000000001-0001'),
                 N('dataOraFlusso', '2030-01-16T08:00:00'), N('xmlRendicontazione', b64('<flusso/>'))],
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd'),
                 N('identificativoDominio', '77777777777'), N('identificativoFlusso', '2030-01-16PSP60000000001-0001'),
                 N('dataOraFlusso', '2030-01-16T08:00:00'), N('xmlRendicontazione', b64('<flusso/>'))], legacy=True),
    Msg('nodoInviaFlussoRendicontazioneResponse', 'nfp', 'res', lambda: [N('esito', 'OK')],
        lambda: [fault(full=False), N('esito', 'KO')], legacy=True),
    Msg('nodoChiediTemplateInformativaPSPRequest', 'nfp', 'req',
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd')],
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd')], legacy=True),
    Msg('nodoChiediTemplateInformativaPSPResponse', 'nfp', 'res', lambda: [],
        lambda: [fault(full=False), N('xmlTemplateInformativa', b64('<informativa/>'))], legacy=True),
    Msg('nodoChiediInformativaPARequest', 'nfp', 'req',
        lambda: [N('identificativoIntermediarioPSP', '60000000001'), N('identificativoCanale', '60000000001_01'),
                 N('password', 'pwdpwdpwd')],
        lambda: [N('identificativoPSP', '60000000001'), N('identificativoIntermediarioPSP', '60000000001'),
                 N('identificativoCanale', '60000000001_01'), N('password', 'pwdpwdpwd'),
                 N('identificativoDominio', '77777777777')], legacy=True),
    Msg('nodoChiediInformativaPAResponse', 'nfp', 'res', lambda: [],
        lambda: [fault(full=False), N('xmlInformativa', b64('<informativa/>'))], legacy=True),
]
MSG = {m.root: m for m in MESSAGES}
IN_SCOPE = [m.root for m in MESSAGES if not m.legacy]
assert len(IN_SCOPE) == 26

# --------------------------------------------------------------------------------------------
# Envelopes
# --------------------------------------------------------------------------------------------


def envelope(msg, kids, o):
    p = o.get('prefix', msg.iface)
    sp = o.get('soap_prefix', 'soapenv')
    sns = o.get('soap_ns', NS_SOAP)
    ns = o.get('ns', NS[msg.iface])
    root_attrs = o.get('root_attrs', '')
    body = []
    for k in kids:
        ser(k, 3, body)
    payload = ''.join(body)
    if o.get('root_default_ns'):
        ns_decl = ''
        open_, close = f'<{msg.root} xmlns="{ns}"{root_attrs}>', f'</{msg.root}>'
    else:
        ns_decl = f' xmlns:{p}="{ns}"'
        open_, close = f'<{p}:{msg.root}{root_attrs}>', f'</{p}:{msg.root}>'
    if o.get('soap_default_ns'):
        env_open, soap_decl, sp_ = 'Envelope', f' xmlns="{sns}"', ''
    else:
        env_open, soap_decl, sp_ = f'{sp}:Envelope', f' xmlns:{sp}="{sns}"', f'{sp}:'
    return (f'{o.get("decl", "")}<{env_open}{soap_decl}{ns_decl}{o.get("env_attrs", "")}>\n'
            f'{o.get("header", "")}'
            f'  <{sp_}Body{o.get("body_attrs", "")}>\n'
            f'    {open_}\n{payload}    {close}\n'
            f'  </{sp_}Body>\n'
            f'{o.get("after_body", "")}'
            f'</{sp_}Envelope>\n')


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

CASES = []


class Case:
    def __init__(self, msg, slug, verdict, rule, field, base, mut, post, post_bytes, opts, note, oracle, libxml2,
                 encoding):
        self.msg, self.slug, self.verdict, self.rule, self.field = MSG[msg], slug, verdict, rule, field
        self.base, self.mut, self.post, self.post_bytes, self.opts = base, mut, post, post_bytes, opts or {}
        self.oracle = oracle or verdict
        self.libxml2 = libxml2 or self.oracle
        if rule == 'service-payload' and self.libxml2 != verdict and self.oracle == verdict:
            note = ('plain libxml2 checks only the base64 lexical form; xsd-check and pagonode also validate the '
                    'decoded service document' + (f' ({note})' if note else ''))
        if (verdict != self.oracle or verdict != self.libxml2) and not note:
            raise ValueError(f'{msg}__{slug}: verdict differs from oracle/libxml2 without a note')
        self.note = note
        self.encoding = encoding

    @property
    def file(self):
        return f'{self.verdict}/{self.msg.root}__{self.slug}.xml'

    @property
    def fault(self):
        return '-' if self.verdict == 'valid' else self.msg.fault

    def render(self):
        kids = self.msg.tree(self.base)
        if self.mut:
            self.mut(kids)
        text = envelope(self.msg, kids, self.opts)
        if self.post:
            text = self.post(text)
        data = text.encode(self.encoding)
        if self.post_bytes:
            data = self.post_bytes(data)
        return data


def valid(msg, slug, base='typ', mut=None, post=None, post_bytes=None, opts=None, note='', oracle=None, libxml2=None,
          encoding='utf-8'):
    CASES.append(Case(msg, slug, 'valid', '-', '-', base, mut, post, post_bytes, opts, note, oracle, libxml2,
                      encoding))


def invalid(msg, slug, rule, field, base='typ', mut=None, post=None, post_bytes=None, opts=None, note='',
            oracle=None, libxml2=None, encoding='utf-8'):
    CASES.append(Case(msg, slug, 'invalid', rule, field, base, mut, post, post_bytes, opts, note, oracle, libxml2,
                      encoding))


def first_name(msg, base='typ'):
    return next(k.name for k in msg.tree(base) if isinstance(k, N))


def sub(old, new, count=1):
    """A post-processor replacing the first `count` occurrences of `old` (which must occur)."""
    def f(text):
        assert old in text, old
        return text.replace(old, new, count)
    return f


def subs(*pairs):
    fs = [sub(a, b) for a, b in pairs]

    def f(text):
        for g in fs:
            text = g(text)
        return text
    return f


def last_simple_close(text):
    """Position and name of the last closing tag of a simple element (`</name>` after text)."""
    ms = list(re.finditer(r'>([^<>\n]+)</([A-Za-z][\w.-]*)>', text))
    return ms[-1]


def mismatch_last(text):
    m = last_simple_close(text)
    name = m.group(2)
    bad = name[:-1] + name[-1].swapcase()
    return text[:m.start(2)] + bad + text[m.end(2):]


def truncate(text):
    return text[:len(text) * 3 // 5]


# ---------------- generic cases, one set per in-scope message --------------------------------

def generic(root):
    m = MSG[root]
    kids = m.tree('typ')
    names = [k.name for k in kids if isinstance(k, N)]
    first, second = names[0], (names[1] if len(names) > 1 else None)
    p = m.iface
    # 1. first required element missing
    invalid(root, 'missing_first_element', 'missing-element', second or first, mut=rm(first),
            note=f'{first} removed; the next element is the unexpected one' if second else f'{first} removed')
    # 2. empty root
    invalid(root, 'empty_root', 'missing-element', first, base='min', mut=lambda k: k.clear(),
            note=f'root element has no content; {first} is required')
    # 3. unknown element at the end
    invalid(root, 'unknown_element_at_end', 'unexpected-element', 'extraField',
            mut=append('', N('extraField', 'x')), note='no xsd:any in the payloads')
    # 4. qualified child
    invalid(root, 'qualified_child', 'qualified-child', first, mut=rename(first, f'{p}:{first}'),
            note='children are unqualified (no elementFormDefault)')
    # 5. default namespace leaking to the children
    invalid(root, 'default_namespace_on_children', 'default-namespace', first, opts={'root_default_ns': True},
            note='xmlns on the root without xmlns="" on the children puts them in the payload namespace')
    # 6. payload root in the WSDL namespace
    invalid(root, 'root_in_wsdl_namespace', 'root-namespace', root, opts={'ns': WSDL_NS[p]},
            note='the WSDL targetNamespace is not the payload namespace')
    # 7. SOAP 1.2 envelope
    invalid(root, 'soap12_envelope', 'envelope-namespace', '-', opts={'soap_ns': NS_SOAP12},
            note='SOAP 1.2 namespace; the node speaks SOAP 1.1 only')
    # 8. character data in element-only content
    invalid(root, 'text_in_element_only_content', 'text-in-element-only', root,
            mut=ins_after(first, Raw('testo')) if second else append('', Raw('testo')))
    # 9. attribute on a payload element
    invalid(root, 'attribute_on_child', 'attribute', first, mut=attr(first, 'lang', 'it'),
            note='payload elements declare no attributes')
    # 10. xsi:nil
    invalid(root, 'xsi_nil_on_child', 'xsi-nil', first, mut=attr(first, 'xsi:nil', 'true'),
            opts={'env_attrs': f' xmlns:xsi="{XSI}"'}, note='no pagoPA element is nillable')
    # 11. required single element repeated
    invalid(root, 'first_element_twice', 'too-many', first, mut=dup(first), note=f'{first} has maxOccurs=1')
    # 12-13. not well-formed
    invalid(root, 'mismatched_end_tag', 'not-well-formed', '-', post=mismatch_last)
    invalid(root, 'truncated', 'not-well-formed', '-', post=truncate)
    # 14. Body missing / empty
    invalid(root, 'body_missing', 'missing-body', '-',
            post=lambda t: re.sub(r'  <soapenv:Body>\n.*  </soapenv:Body>\n', '', t, flags=re.S))
    invalid(root, 'body_empty', 'empty-body', '-',
            post=lambda t: re.sub(r'(<soapenv:Body>)\n.*(  </soapenv:Body>)', r'\1\n\2', t, flags=re.S))
    # 15. unbound payload prefix
    invalid(root, 'unbound_payload_prefix', 'not-well-formed', '-', post=sub(f' xmlns:{p}="{NS[p]}"', ''))


for _r in IN_SCOPE:
    generic(_r)

# ---------------- valid: min / typical / max / KO for every message -------------------------

for _m in MESSAGES:
    valid(_m.root, 'minimal', base='min', note='required elements only')
    valid(_m.root, 'all_optional', base='typ',
          note='every optional element set' + (', fault included' if _m.direction == 'res' and
                                                 any(k.name == 'fault' for k in _m.typical()) else ''))
    if _m.maximal:
        valid(_m.root, 'maximal', base='max', note='every optional element, lists at their maximum cardinality')
    if _m.direction == 'res' and _m.root.startswith(('pa', 'demand', 'verify', 'activate', 'send', 'nodoChiediC')):
        valid(_m.root, 'ko_with_fault', base='min',
              mut=ops(set_('outcome', 'KO'), ins_after('outcome', fault(full=False))), note='KO with a fault bean')

# ============================================================================================
# Specific cases, message by message
# ============================================================================================

R = 'demandPaymentNoticeRequest'
valid(R, 'service_a001_passaporto', mut=set_('datiSpecificiServizio', b64(A001)))
valid(R, 'service_d847_pesca', mut=set_('datiSpecificiServizio', b64(D847)))
valid(R, 'service_tassa_auto_default_namespace',
      mut=set_('datiSpecificiServizio', b64(f'<tassaAuto xmlns="{NS_TA}"><veicoloConTarga><tipoVeicoloTarga>4'
                                            '</tipoVeicoloTarga><veicoloTarga>AB12345</veicoloTarga></veicoloConTarga>'
                                            '</tassaAuto>')),
      note='service document children qualified through a default namespace; motorcycle, 7-char plate')
valid(R, 'service_tassa_auto_xml_declaration',
      mut=set_('datiSpecificiServizio', b64('<?xml version="1.0" encoding="UTF-8"?>\n' + tassa('2', 'AB123CDE'))),
      note='service document with its own XML declaration; trailer, 8-char plate')
valid(R, 'service_unknown_namespace', mut=set_('datiSpecificiServizio', b64('<x:altro xmlns:x="urn:esempio:altro">'
                                                                           '<x:campo>1</x:campo></x:altro>')),
      note='a namespace with no catalogue schema: only well-formedness is checked')
valid(R, 'service_base64_line_wrapped',
      mut=set_('datiSpecificiServizio', Raw('\n' + '\n'.join(
          b64(TASSA)[i:i + 76] for i in range(0, len(b64(TASSA)), 76)) + '\n')),
      oracle='invalid', libxml2='valid',
      note='DIVERGENCE (oracle): MIME-style line breaks are legal xsd:base64Binary whitespace; libxml2 and '
           'pagonode accept them, but xsd-check decodes with b64decode(validate=True), which rejects newlines')
valid(R, 'id_soggetto_servizio_accented', mut=set_('idSoggettoServizio', 'àèìòù'),
      note='length 5 in characters (10 bytes)')
invalid(R, 'id_psp_empty', 'length-min', 'idPSP', mut=set_('idPSP', ''))
invalid(R, 'id_psp_36', 'length-max', 'idPSP', mut=set_('idPSP', ascii_n(36, '6')))
invalid(R, 'id_broker_psp_empty', 'length-min', 'idBrokerPSP', mut=set_('idBrokerPSP', None))
invalid(R, 'id_broker_psp_36', 'length-max', 'idBrokerPSP', mut=set_('idBrokerPSP', ascii_n(36, '6')))
invalid(R, 'id_channel_empty', 'length-min', 'idChannel', mut=set_('idChannel', ''))
invalid(R, 'id_channel_36', 'length-max', 'idChannel', mut=set_('idChannel', '60000000001_' + ascii_n(24, '1')))
invalid(R, 'password_7', 'length-min', 'password', mut=set_('password', 'pwdpwdp'))
invalid(R, 'password_16', 'length-max', 'password', mut=set_('password', 'pwdpwdpwdpwdpwdp'))
invalid(R, 'password_36', 'length-max', 'password', mut=set_('password', ascii_n(36, 'p')))
invalid(R, 'password_empty', 'length-min', 'password', mut=set_('password', ''))
invalid(R, 'password_missing', 'missing-element', 'idSoggettoServizio', mut=rm('password'))
invalid(R, 'id_soggetto_servizio_4', 'length', 'idSoggettoServizio', mut=set_('idSoggettoServizio', '0004'))
invalid(R, 'id_soggetto_servizio_6', 'length', 'idSoggettoServizio', mut=set_('idSoggettoServizio', '000042'))
invalid(R, 'id_soggetto_servizio_empty', 'length', 'idSoggettoServizio', mut=set_('idSoggettoServizio', ''))
invalid(R, 'id_soggetto_servizio_missing', 'missing-element', 'datiSpecificiServizio', mut=rm('idSoggettoServizio'))
invalid(R, 'id_soggetto_servizio_twice', 'too-many', 'idSoggettoServizio', mut=dup('idSoggettoServizio'))
invalid(R, 'id_servizio_not_in_psp_request', 'unexpected-element', 'idServizio',
        mut=ins_before('idSoggettoServizio', N('idServizio', '00001')),
        note='idServizio exists only in the EC-side request')
invalid(R, 'dati_specifici_servizio_missing', 'missing-element', 'datiSpecificiServizio',
        mut=rm('datiSpecificiServizio'))
invalid(R, 'dati_specifici_servizio_twice', 'too-many', 'datiSpecificiServizio', mut=dup('datiSpecificiServizio'))
invalid(R, 'dati_specifici_servizio_empty', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', ''), oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): an empty service document is rejected, as the official node does '
             '(PPT_SINTASSI_EXTRAXSD); libxml2 accepts empty base64 and xsd-check skips empty text')
invalid(R, 'dati_specifici_servizio_self_closing', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', None), oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): <datiSpecificiServizio/> is an empty service document, rejected as above')
invalid(R, 'dati_specifici_servizio_cia', 'base64', 'datiSpecificiServizio', mut=set_('datiSpecificiServizio', 'cia'),
        note='bad base64 length')
invalid(R, 'dati_specifici_servizio_cia_dollar', 'base64', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', 'cia$'), note='bad base64 character')
invalid(R, 'dati_specifici_servizio_percent', 'base64', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', '%%%'), libxml2='valid',
        note='libxml2 skips the non-alphabet characters and accepts "%%%" as empty base64; xsd-check and '
             'pagonode decode strictly')
invalid(R, 'dati_specifici_servizio_at_signs', 'base64', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', '@@@@'), libxml2='valid',
        note='libxml2 accepts "@@@@" (non-alphabet characters skipped); xsd-check and pagonode reject it')
invalid(R, 'dati_specifici_servizio_not_xml', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64('ciao mondo, non sono XML')), libxml2='valid',
        note='valid base64 of text that is not XML')
invalid(R, 'dati_specifici_servizio_xml_not_well_formed', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(TASSA.replace('</ta:veicoloConTarga>', ''))), libxml2='valid',
        note='decoded service document is not well-formed')
invalid(R, 'tassa_auto_tipo_veicolo_3', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(tassa('3'))), libxml2='valid',
        note='TassaAuto tipoVeicoloTarga enumeration is 1, 2, 4')
invalid(R, 'tassa_auto_plate_6_chars', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(tassa('1', 'AB123C'))), libxml2='valid',
        note='TassaAuto veicoloTarga length is 7..8')
invalid(R, 'tassa_auto_plate_9_chars', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(tassa('1', 'AB123CDEF'))), libxml2='valid',
        note='TassaAuto veicoloTarga length is 7..8')
invalid(R, 'tassa_auto_unqualified_children', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(TASSA.replace('<ta:v', '<v').replace('</ta:v', '</v')
                                              .replace('<ta:t', '<t').replace('</ta:t', '</t')
                                              .replace('<tassaAuto', '<ta:tassaAuto')
                                              .replace('</tassaAuto', '</ta:tassaAuto'))), libxml2='valid',
        note='TassaAuto is elementFormDefault="qualified": its children must be namespaced')
invalid(R, 'tassa_auto_plate_missing', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(re.sub(r'<ta:veicoloTarga>.*</ta:veicoloTarga>', '', TASSA))),
        libxml2='valid')
invalid(R, 'tassa_auto_wrong_root', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(f'<ta:veicoloConTarga xmlns:ta="{NS_TA}"><ta:tipoVeicoloTarga>1'
                                              '</ta:tipoVeicoloTarga><ta:veicoloTarga>AB123CD</ta:veicoloTarga>'
                                              '</ta:veicoloConTarga>')), libxml2='valid',
        note='veicoloConTarga is not a global element of TassaAutomobilistica_1_1_0')
invalid(R, 'a001_codice_pratica_wrong', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(A001.replace('>A001<', '>A002<'))), libxml2='valid',
        note='codicePratica is fixed to A001')
invalid(R, 'a001_denominazione_51', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(A001.replace('>Mario Rossi<', '>' + acc(51) + '<'))), libxml2='valid',
        note='denominazionePagatore is 1..50 characters (51 accented)')
invalid(R, 'a001_intestatario_missing', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(re.sub(r'<pp:intestatario>.*</pp:intestatario>', '', A001))),
        libxml2='valid')
invalid(R, 'd847_note_41', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(D847.replace('Licenza di pesca tipo B, anno 2030', ascii_n(41, 'n')))),
        libxml2='valid', note='note is 1..40 characters')
invalid(R, 'd847_codice_pratica_a001', 'service-payload', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', b64(D847.replace('>D847<', '>A001<'))), libxml2='valid',
        note='codicePratica is fixed to D847')
invalid(R, 'dati_specifici_servizio_element_content', 'text-in-simple', 'datiSpecificiServizio',
        mut=set_('datiSpecificiServizio', [N('tassaAuto', 'x')]),
        note='the service document must be base64 text, not inline XML')

R = 'demandPaymentNoticeResponse'
invalid(R, 'outcome_lowercase', 'enumeration', 'outcome', mut=set_('outcome', 'ok'))
invalid(R, 'outcome_missing', 'missing-element', 'fault', mut=rm('outcome'))
invalid(R, 'fault_code_missing', 'missing-element', 'faultString', mut=rm('fault/faultCode'))
invalid(R, 'fault_id_missing', 'missing-element', 'description', mut=rm('fault/id'))
invalid(R, 'fault_serial_not_int', 'integer', 'serial', mut=set_('fault/serial', 'uno'))
invalid(R, 'fault_serial_out_of_int_range', 'int-range', 'serial', mut=set_('fault/serial', '2147483648'))
invalid(R, 'fault_before_outcome', 'order', 'fault', mut=swap('outcome', 'fault'))
invalid(R, 'notice_number_17', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '30200010000000942'))
invalid(R, 'six_payment_options', 'too-many', 'paymentOptionDescription',
        mut=repeat('paymentList/paymentOptionDescription', 6, set_option))
invalid(R, 'payment_list_empty', 'missing-element', 'paymentOptionDescription', mut=set_('paymentList', None))
invalid(R, 'option_amount_zero', 'amount-not-zero', 'amount',
        mut=set_('paymentList/paymentOptionDescription/amount', '0.00'))
invalid(R, 'option_lt', 'enumeration', 'options', mut=set_('paymentList/paymentOptionDescription/options', 'LT'),
        note='LT appears in old docs; the enumeration is EQ, LS, GT, ANY')
invalid(R, 'payment_description_211', 'length-max', 'paymentDescription',
        mut=set_('paymentDescription', ascii_n(211, 'd')))
invalid(R, 'company_name_141', 'length-max', 'companyName', mut=set_('companyName', acc(141)))
invalid(R, 'office_name_empty', 'empty-element', 'officeName', mut=set_('officeName', None))
invalid(R, 'fiscal_code_pa_10', 'pattern', 'fiscalCodePA', mut=set_('fiscalCodePA', '7777777777'))
invalid(R, 'qr_code_after_payment_list', 'order', 'qrCode', mut=swap('qrCode', 'paymentList'))
valid(R, 'payment_description_210', mut=set_('paymentDescription', acc(210)),
      note='PSP side paymentDescription is stText210 (210 accented characters)')

R = 'verifyPaymentNoticeReq'
invalid(R, 'notice_number_17', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '30200010000000942'))
invalid(R, 'notice_number_19', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '3020001000000094241'))
invalid(R, 'notice_number_letters', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '30200010000000942A'))
invalid(R, 'notice_number_padded', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', ' 302000100000009424 '),
        note='xsd:string keeps whitespace: the pattern sees the spaces')
invalid(R, 'fiscal_code_10', 'pattern', 'fiscalCode', mut=set_('qrCode/fiscalCode', '7777777777'))
invalid(R, 'fiscal_code_12', 'pattern', 'fiscalCode', mut=set_('qrCode/fiscalCode', '777777777777'))
invalid(R, 'fiscal_code_letters', 'pattern', 'fiscalCode', mut=set_('qrCode/fiscalCode', 'RSSMRA80A01'))
invalid(R, 'fiscal_code_arabic_digits', 'pattern', 'fiscalCode', mut=set_('qrCode/fiscalCode', '٧' * 11),
        note='[0-9] is ASCII only')
invalid(R, 'qr_code_missing', 'missing-element', 'qrCode', mut=rm('qrCode'))
invalid(R, 'qr_code_empty', 'missing-element', 'fiscalCode', mut=set_('qrCode', None))
invalid(R, 'qr_code_notice_first', 'order', 'noticeNumber', mut=swap('qrCode/fiscalCode', 'qrCode/noticeNumber'))
invalid(R, 'id_psp_36_accented', 'length-max', 'idPSP', mut=set_('idPSP', acc(36)),
        note='36 characters, counted as characters not bytes')
valid(R, 'id_psp_35_accented', mut=set_('idPSP', acc(35)), note='35 characters (more than 35 bytes)')
valid(R, 'id_psp_35_emoji', mut=set_('idPSP', '😀' * 35), note='35 astral-plane characters = 140 UTF-8 bytes')
invalid(R, 'id_psp_36_emoji', 'length-max', 'idPSP', mut=set_('idPSP', '😀' * 36))
invalid(R, 'id_psp_combining_36', 'length-max', 'idPSP', mut=set_('idPSP', 'e\u0301' * 18),
        note='18 "é" written as e + combining acute: 36 code points')

R = 'verifyPaymentNoticeRes'
invalid(R, 'stand_in_capital_i', 'casing', 'standIn', mut=rename('standin', 'standIn'),
        note='nodeForPsp responses use "standin"; "standIn" is the paForNode receipt spelling')
invalid(R, 'standin_yes', 'boolean', 'standin', mut=set_('standin', 'yes'))
invalid(R, 'standin_uppercase_true', 'boolean', 'standin', mut=set_('standin', 'TRUE'))
invalid(R, 'six_payment_options', 'too-many', 'paymentOptionDescription',
        mut=repeat('paymentList/paymentOptionDescription', 6, set_option))
invalid(R, 'due_date_feb_29_non_leap', 'date-format', 'dueDate',
        mut=set_('paymentList/paymentOptionDescription/dueDate', '2030-02-29'))
invalid(R, 'due_date_month_13', 'date-format', 'dueDate',
        mut=set_('paymentList/paymentOptionDescription/dueDate', '2030-13-01'))
invalid(R, 'due_date_day_32', 'date-format', 'dueDate',
        mut=set_('paymentList/paymentOptionDescription/dueDate', '2030-01-32'))
invalid(R, 'payment_note_empty', 'empty-element', 'paymentNote',
        mut=set_('paymentList/paymentOptionDescription/paymentNote', ''))
invalid(R, 'options_missing', 'missing-element', 'dueDate', mut=rm('paymentList/paymentOptionDescription/options'))
invalid(R, 'amount_no_decimals', 'amount-decimals', 'amount',
        mut=set_('paymentList/paymentOptionDescription/amount', '10'))
invalid(R, 'detail_description_psp_side', 'unexpected-element', 'detailDescription',
        mut=rename('paymentList/paymentOptionDescription/paymentNote', 'detailDescription'),
        note='detailDescription is the EC-side name; the PSP side says paymentNote')
invalid(R, 'all_ccp_psp_side', 'unexpected-element', 'allCCP',
        mut=append('paymentList/paymentOptionDescription', N('allCCP', 'false')),
        note='allCCP is not part of the PSP payment option')
valid(R, 'standin_1', mut=set_('standin', '1'), note='boolean lexical 1')
valid(R, 'due_date_utc', mut=set_('paymentList/paymentOptionDescription/dueDate', '2030-12-31Z'),
      note='xsd:date with timezone Z')
valid(R, 'due_date_leap_day', mut=set_('paymentList/paymentOptionDescription/dueDate', '2032-02-29'))
valid(R, 'options_all_values', base='max',
      mut=lambda k: [set_(f'paymentList/paymentOptionDescription[{i + 1}]/options', v)(k)
                     for i, v in enumerate(['EQ', 'LS', 'GT', 'ANY', 'EQ'])])

R = 'activatePaymentNoticeReq'
for slug, v, rule, note in [
        ('amount_no_decimals', '10', 'amount-decimals', ''),
        ('amount_one_decimal', '10.5', 'amount-decimals', ''),
        ('amount_three_decimals', '10.123', 'amount-decimals', ''),
        ('amount_three_decimals_trailing_zero', '10.120', 'amount-decimals', 'the pattern is lexical'),
        ('amount_negative', '-1.00', 'amount-sign', ''),
        ('amount_plus_sign', '+1.00', 'amount-sign', 'the pattern has no sign'),
        ('amount_comma', '1,00', 'amount-format', ''),
        ('amount_exponent', '1.00E2', 'amount-format', ''),
        ('amount_leading_dot', '.50', 'amount-format', ''),
        ('amount_inner_space', '10 .00', 'amount-format', ''),
        ('amount_nbsp', '10.00\u00a0', 'amount-format', 'NO-BREAK SPACE is not XML whitespace'),
        ('amount_too_big', '1000000000.00', 'amount-max', 'maxInclusive 999999999.99'),
        ('amount_empty', '', 'amount-format', '')]:
    invalid(R, slug, rule, 'amount', mut=set_('amount', v), note=note)
invalid(R, 'amount_missing', 'missing-element', 'dueDate', mut=rm('amount'))
for slug, v, note in [
        ('idempotency_key_underscore_in_prefix', 'AGID_01_a1B2c3D4e5', 'underscore inside the prefix'),
        ('idempotency_key_suffix_9', '60000000001_a1B2c3D4e', ''),
        ('idempotency_key_suffix_11', '60000000001_a1B2c3D4e5f', ''),
        ('idempotency_key_no_underscore', '60000000001a1B2c3D4e5', ''),
        ('idempotency_key_dash', '60000000001-a1B2c3D4e5', ''),
        ('idempotency_key_dot', '60000000001.1244565744', ''),
        ('idempotency_key_percent', '60000000001_%244565744', ''),
        ('idempotency_key_prefix_1', '6_a1B2c3D4e5', 'prefix is 2..18 characters'),
        ('idempotency_key_prefix_19', '6000000000100000001_a1B2c3D4e5', 'prefix is 2..18 characters'),
        ('idempotency_key_accented', '60000000001_à1B2c3D4e5', '[a-zA-Z0-9] is ASCII only')]:
    invalid(R, slug, 'pattern', 'idempotencyKey', mut=set_('idempotencyKey', v), note=note)
for slug, v, rule in [('expiration_time_1800001', '1800001', 'max-inclusive'),
                      ('expiration_time_clock', '12:12', 'integer'),
                      ('expiration_time_hms', '48:12:12', 'integer'),
                      ('expiration_time_decimal', '1000.5', 'integer'),
                      ('expiration_time_datetime', '2030-01-01T00:00:00', 'integer'),
                      ('expiration_time_huge', '99999999999999999999999', 'max-inclusive')]:
    invalid(R, slug, rule, 'expirationTime', mut=set_('expirationTime', v))
invalid(R, 'due_date_datetime', 'date-format', 'dueDate', mut=set_('dueDate', '2030-12-31T00:00:00'),
        note='an xsd:dateTime is not an xsd:date')
invalid(R, 'due_date_italian', 'date-format', 'dueDate', mut=set_('dueDate', '31/12/2030'))
invalid(R, 'due_date_bad_timezone', 'date-format', 'dueDate', mut=set_('dueDate', '2030-12-31+14:01'))
invalid(R, 'payment_note_211', 'length-max', 'paymentNote', mut=set_('paymentNote', acc(211)))
invalid(R, 'payment_note_empty', 'empty-element', 'paymentNote', mut=set_('paymentNote', None))
invalid(R, 'payment_method_v2_only', 'v2-only-element', 'paymentMethod', mut=append('', N('paymentMethod', 'CP')),
        note='paymentMethod/touchPoint exist only in activatePaymentNoticeV2Request')
invalid(R, 'idempotency_key_after_qr_code', 'order', 'idempotencyKey', mut=swap('idempotencyKey', 'qrCode'))
invalid(R, 'amount_before_expiration_time', 'order', 'expirationTime', mut=swap('expirationTime', 'amount'))
valid(R, 'amount_leading_zero', mut=set_('amount', '010.00'), note='leading zeros are allowed by \\d+')
valid(R, 'amount_zero', mut=set_('amount', '0.00'), note='stAmount has no minimum')
valid(R, 'amount_max', mut=set_('amount', '999999999.99'))
valid(R, 'due_date_plus_one', mut=set_('dueDate', '2030-12-31+01:00'), note='xsd:date with timezone')
valid(R, 'due_date_minus_five', mut=set_('dueDate', '2030-12-31-05:00'), note='xsd:date with negative timezone')
valid(R, 'expiration_time_zero', mut=set_('expirationTime', '0'), note='stExpirationTime has no lower bound')
valid(R, 'expiration_time_negative', mut=set_('expirationTime', '-5'), note='stExpirationTime has no lower bound')
valid(R, 'expiration_time_signed_padded', mut=set_('expirationTime', ' +0001800000 '),
      note='xsd:integer: sign, leading zeros, whitespace collapsed')
valid(R, 'idempotency_key_prefix_2', mut=set_('idempotencyKey', 'AB_a1B2c3D4e5'))
valid(R, 'idempotency_key_prefix_18', mut=set_('idempotencyKey', 'abcdefghij01234567_a1B2c3D4e5'))
valid(R, 'payment_note_crlf_normalized', mut=set_('paymentNote', Raw(acc(100) + '\r\n' + acc(109))),
      note='CR LF in the text is normalized to LF: 210 characters after parsing')
invalid(R, 'payment_note_char_ref_cr', 'length-max', 'paymentNote',
        mut=set_('paymentNote', Raw(acc(100) + '&#13;&#10;' + acc(109))),
        note='&#13;&#10; is not normalized: 211 characters')

R = 'activatePaymentNoticeRes'
invalid(R, 'six_transfers', 'too-many', 'transfer', mut=repeat('transferList/transfer', 6,
                                                                 lambda i, n: set_id(min(i, 4), n)))
invalid(R, 'transfer_list_empty', 'missing-element', 'transfer', mut=set_('transferList', None))
invalid(R, 'transfer_category_v1', 'v2-only-element', 'transferCategory',
        mut=ins_after('transferList/transfer/remittanceInformation', N('transferCategory', '0101101IM')),
        note='transferCategory exists only in the V2 PSP transfer')
invalid(R, 'transfer_company_name_v1', 'v2-only-element', 'companyName',
        mut=ins_after('transferList/transfer/fiscalCodePA', N('companyName', 'Comune di Esempio')))
invalid(R, 'stamp_in_v1_transfer', 'v2-only-element', 'richiestaMarcaDaBollo',
        mut=ops(rm('transferList/transfer/IBAN'), ins_after('transferList/transfer/fiscalCodePA', stamp())))
invalid(R, 'iban_missing', 'missing-element', 'remittanceInformation', mut=rm('transferList/transfer/IBAN'),
        note='the V1 PSP transfer requires an IBAN')
invalid(R, 'iban_lowercase_element', 'casing', 'iban', mut=rename('transferList/transfer/IBAN', 'iban'))
for slug, v, note in [('iban_with_spaces', 'IT60 X054 2811 1010 0000 0123 456', ''),
                      ('iban_digit_country', 'I160X0542811101000000123456', ''),
                      ('iban_35', 'IT60' + ascii_n(31, 'X'), 'at most 34 characters'),
                      ('iban_4', 'IT60', 'at least 5 characters'),
                      ('iban_empty', '', '')]:
    invalid(R, slug, 'pattern', 'IBAN', mut=set_('transferList/transfer/IBAN', v), note=note)
for slug, v, rule in [('id_transfer_0', '0', 'enumeration'), ('id_transfer_6', '6', 'enumeration'),
                      ('id_transfer_decimal', '1.0', 'integer'), ('id_transfer_letter', 'a', 'integer'),
                      ('id_transfer_negative', '-1', 'enumeration')]:
    invalid(R, slug, rule, 'idTransfer', mut=set_('transferList/transfer/idTransfer', v))
invalid(R, 'payment_token_36', 'length-max', 'paymentToken', mut=set_('paymentToken', UUID36),
        note='a UUID with dashes is 36 characters; stPaymentToken is 1..35')
invalid(R, 'payment_token_empty', 'length-min', 'paymentToken', mut=set_('paymentToken', ''))
invalid(R, 'sixteen_map_entries', 'too-many', 'mapEntry',
        mut=repeat('transferList/transfer/metadata/mapEntry', 16, set_key))
invalid(R, 'map_entry_value_missing', 'missing-element', 'value',
        mut=rm('transferList/transfer/metadata/mapEntry/value'))
invalid(R, 'map_entry_key_141', 'length-max', 'key',
        mut=set_('transferList/transfer/metadata/mapEntry/key', ascii_n(141, 'k')))
invalid(R, 'metadata_empty', 'missing-element', 'mapEntry', mut=set_('transferList/transfer/metadata', None))
invalid(R, 'metadata_position_level_v1', 'v2-only-element', 'metadata',
        mut=ins_after('transferList', metadata(1)), note='position-level metadata exists only in the V2 response')
invalid(R, 'standin_true_uppercase', 'boolean', 'standin', mut=set_('standin', 'True'))
invalid(R, 'creditor_reference_id_36', 'length-max', 'creditorReferenceId',
        mut=set_('creditorReferenceId', ascii_n(36, '0')))
invalid(R, 'payment_description_141', 'length-max', 'paymentDescription',
        mut=set_('paymentDescription', ascii_n(141, 'd')), note='stText140 here (210 in verify/demand)')
invalid(R, 'total_amount_two_decimals_comma', 'amount-format', 'totalAmount', mut=set_('totalAmount', '10,00'))
invalid(R, 'suggested_user_fee_v1', 'v2-only-element', 'suggestedUserFee',
        mut=ins_after('creditorReferenceId', N('suggestedUserFee', '1.00')))
valid(R, 'iban_lowercase_value', mut=set_('transferList/transfer/IBAN', 'it60x0542811101000000123456'),
      note='the PSP stIBAN pattern allows lower case')
valid(R, 'iban_34', mut=set_('transferList/transfer/IBAN', 'IT60' + ascii_n(30, 'X')))
valid(R, 'id_transfer_leading_zero', mut=set_('transferList/transfer/idTransfer', '01'),
      note='stIdTransfer is an int enumeration: checked by value')
valid(R, 'id_transfer_padded', mut=set_('transferList/transfer/idTransfer', ' 1 '))
valid(R, 'transfer_amount_zero', mut=set_('transferList/transfer/transferAmount', '0.00'),
      note='PSP-side transferAmount is stAmount: 0.00 allowed')
valid(R, 'total_amount_padded', mut=set_('totalAmount', Raw('\n\t 10.00 \n')), note='decimal whitespace collapsed')
valid(R, 'standin_0', mut=set_('standin', '0'))

R = 'activatePaymentNoticeV2Request'
invalid(R, 'payment_method_cc', 'enumeration', 'paymentMethod', mut=set_('paymentMethod', 'CC'))
invalid(R, 'payment_method_lowercase', 'enumeration', 'paymentMethod', mut=set_('paymentMethod', 'cp'))
invalid(R, 'payment_method_spo_enum', 'enumeration', 'paymentMethod', mut=set_('paymentMethod', 'creditCard'),
        note='creditCard belongs to the sendPaymentOutcome enumeration')
invalid(R, 'payment_method_trailing_space', 'enumeration', 'paymentMethod', mut=set_('paymentMethod', 'PPAL '),
        note='string enumerations keep whitespace')
invalid(R, 'touch_point_app', 'enumeration', 'touchPoint', mut=set_('touchPoint', 'APP'))
invalid(R, 'touch_point_before_payment_method', 'order', 'paymentMethod', mut=swap('paymentMethod', 'touchPoint'))
invalid(R, 'amount_one_decimal', 'amount-decimals', 'amount', mut=set_('amount', '10.5'))
invalid(R, 'amount_too_big', 'amount-max', 'amount', mut=set_('amount', '9999999999.00'))
invalid(R, 'idempotency_key_old_pattern_suffix', 'pattern', 'idempotencyKey',
        mut=set_('idempotencyKey', '60000000001_1244565768_'))
invalid(R, 'expiration_time_1800001', 'max-inclusive', 'expirationTime', mut=set_('expirationTime', '1800001'))
invalid(R, 'password_16', 'length-max', 'password', mut=set_('password', 'p' * 16))
invalid(R, 'touch_point_twice', 'too-many', 'touchPoint', mut=dup('touchPoint'))
valid(R, 'amount_padded', mut=set_('amount', ' 10.00 '), note='decimal whitespace is collapsed')
valid(R, 'all_payment_methods_ppal', mut=ops(set_('paymentMethod', 'PPAL'), set_('touchPoint', 'CHECKOUT')))
valid(R, 'payment_method_obep_pos', mut=ops(set_('paymentMethod', 'OBEP'), set_('touchPoint', 'POS')))
valid(R, 'only_touch_point', mut=rm('paymentMethod'))

R = 'activatePaymentNoticeV2Response'
T1 = 'transferList/transfer[1]'
T2 = 'transferList/transfer[2]'
invalid(R, 'iban_and_stamp', 'choice', 'richiestaMarcaDaBollo', mut=ins_after(f'{T1}/IBAN', stamp()),
        note='IBAN and richiestaMarcaDaBollo are a choice')
invalid(R, 'stamp_before_iban', 'choice', 'IBAN',
        mut=ins_before(f'{T1}/IBAN', stamp()))
invalid(R, 'six_transfers', 'too-many', 'transfer', mut=repeat('transferList/transfer', 6,
                                                                 lambda i, n: set_id(min(i, 4), n)))
invalid(R, 'hash_documento_73_plus', 'pattern', 'hashDocumento',
        mut=set_(f'{T2}/richiestaMarcaDaBollo/hashDocumento', HASH76), note='pattern .{4,72} on the lexical form')
invalid(R, 'hash_documento_not_base64', 'base64', 'hashDocumento',
        mut=set_(f'{T2}/richiestaMarcaDaBollo/hashDocumento', 'QR=='),
        note='QR== has non-zero trailing bits')
invalid(R, 'tipo_bollo_02', 'enumeration', 'tipoBollo', mut=set_(f'{T2}/richiestaMarcaDaBollo/tipoBollo', '02'))
invalid(R, 'tipo_bollo_1', 'enumeration', 'tipoBollo', mut=set_(f'{T2}/richiestaMarcaDaBollo/tipoBollo', '1'))
invalid(R, 'provincia_lowercase', 'pattern', 'provinciaResidenza',
        mut=set_(f'{T2}/richiestaMarcaDaBollo/provinciaResidenza', 'rm'))
invalid(R, 'provincia_3_letters', 'pattern', 'provinciaResidenza',
        mut=set_(f'{T2}/richiestaMarcaDaBollo/provinciaResidenza', 'ROM'))
invalid(R, 'tipo_bollo_missing', 'missing-element', 'provinciaResidenza',
        mut=rm(f'{T2}/richiestaMarcaDaBollo/tipoBollo'))
invalid(R, 'stamp_empty', 'missing-element', 'hashDocumento', mut=set_(f'{T2}/richiestaMarcaDaBollo', None))
invalid(R, 'suggested_user_fee_one_decimal', 'amount-decimals', 'suggestedUserFee', mut=set_('suggestedUserFee', '1.5'))
invalid(R, 'suggested_id_bundle_71', 'length-max', 'suggestedIdBundle', mut=set_('suggestedIdBundle', acc(71)))
invalid(R, 'all_ccp_yes', 'boolean', 'allCCP', mut=set_('allCCP', 'yes'))
invalid(R, 'all_ccp_empty', 'boolean', 'allCCP', mut=set_('allCCP', None))
invalid(R, 'sixteen_map_entries', 'too-many', 'mapEntry', mut=repeat('metadata/mapEntry', 16, set_key))
invalid(R, 'transfer_category_141', 'length-max', 'transferCategory',
        mut=set_(f'{T1}/transferCategory', ascii_n(141, 'c')))
invalid(R, 'transfer_company_name_empty', 'empty-element', 'companyName', mut=set_(f'{T1}/companyName', ''))
invalid(R, 'metadata_after_creditor_reference_id', 'order', 'metadata', mut=swap('metadata', 'creditorReferenceId'))
invalid(R, 'standin_before_all_ccp', 'order', 'allCCP', mut=swap('allCCP', 'standin'))
invalid(R, 'stand_in_capital_i', 'casing', 'standIn', mut=rename('standin', 'standIn'))
invalid(R, 'mbd_attachment_in_psp_transfer', 'unexpected-element', 'MBDAttachment',
        mut=ops(rm(f'{T1}/IBAN'), ins_after(f'{T1}/companyName', N('MBDAttachment', MBD))),
        note='MBDAttachment belongs to the receipt transfer, not to the PSP one')
valid(R, 'transfer_without_iban_or_stamp', mut=rm(f'{T1}/IBAN'), note='the V2 PSP choice is optional (minOccurs=0)')
valid(R, 'hash_documento_72', mut=set_(f'{T2}/richiestaMarcaDaBollo/hashDocumento', HASH72))
valid(R, 'hash_documento_4', mut=set_(f'{T2}/richiestaMarcaDaBollo/hashDocumento', 'QUJD'))
valid(R, 'suggested_fees_zero', mut=ops(set_('suggestedUserFee', '0.00'), set_('suggestedPaFee', '0.00')))
valid(R, 'all_ccp_1_standin_0', mut=ops(set_('allCCP', '1'), set_('standin', '0')))

R = 'sendPaymentOutcomeReq'
D = 'details'
invalid(R, 'payment_token_36', 'length-max', 'paymentToken', mut=set_('paymentToken', UUID36))
invalid(R, 'payment_token_empty', 'length-min', 'paymentToken', mut=set_('paymentToken', None))
invalid(R, 'payment_token_missing', 'missing-element', 'outcome', mut=rm('paymentToken'))
invalid(R, 'payment_tokens_wrapper_v1', 'v2-only-element', 'paymentTokens',
        mut=rename('paymentToken', 'paymentTokens'), note='the paymentTokens wrapper is V2 only')
invalid(R, 'outcome_trailing_space', 'enumeration', 'outcome', mut=set_('outcome', 'OK '))
invalid(R, 'outcome_lowercase', 'enumeration', 'outcome', mut=set_('outcome', 'ok'))
invalid(R, 'outcome_missing', 'missing-element', 'details', mut=rm('outcome'))
invalid(R, 'payment_method_cp', 'enumeration', 'paymentMethod', mut=set_(f'{D}/paymentMethod', 'CP'),
        note='CP is the activate V2 enumeration; here it is cash/creditCard/bancomat/other')
invalid(R, 'payment_method_missing', 'missing-element', 'paymentChannel', mut=rm(f'{D}/paymentMethod'))
invalid(R, 'payment_channel_web', 'enumeration', 'paymentChannel', mut=set_(f'{D}/paymentChannel', 'web'))
invalid(R, 'fee_one_decimal', 'amount-decimals', 'fee', mut=set_(f'{D}/fee', '1.5'))
invalid(R, 'fee_too_big', 'amount-max', 'fee', mut=set_(f'{D}/fee', '1000000000.00'))
invalid(R, 'fee_missing', 'missing-element', 'payer', mut=rm(f'{D}/fee'))
invalid(R, 'application_date_missing', 'missing-element', 'transferDate', mut=rm(f'{D}/applicationDate'))
invalid(R, 'transfer_date_missing', 'missing-element', 'transferDate', mut=rm(f'{D}/transferDate'))
invalid(R, 'transfer_date_datetime', 'date-format', 'transferDate',
        mut=set_(f'{D}/transferDate', '2030-01-16T10:00:00'))
invalid(R, 'application_date_short_year', 'date-format', 'applicationDate', mut=set_(f'{D}/applicationDate', '30-01-15'))
invalid(R, 'fee_before_payment_channel', 'order', 'paymentChannel',
        mut=swap(f'{D}/paymentChannel', f'{D}/fee'))
P = f'{D}/payer'
for slug, path, v, rule in [
        ('payer_email_no_domain', 'e-mail', 'mario@', 'pattern'),
        ('payer_email_double_dot', 'e-mail', 'mario@example..it', 'pattern'),
        ('payer_email_space', 'e-mail', 'mario rossi@example.it', 'pattern'),
        ('payer_email_257', 'e-mail', ascii_n(246, 'm') + '@example.it', 'length-max'),
        ('payer_country_lowercase', 'country', 'it', 'pattern'),
        ('payer_country_3', 'country', 'ITA', 'pattern'),
        ('payer_type_x', 'uniqueIdentifier/entityUniqueIdentifierType', 'X', 'enumeration'),
        ('payer_type_lowercase', 'uniqueIdentifier/entityUniqueIdentifierType', 'f', 'enumeration'),
        ('payer_value_1', 'uniqueIdentifier/entityUniqueIdentifierValue', 'R', 'length-min'),
        ('payer_value_17', 'uniqueIdentifier/entityUniqueIdentifierValue', 'RSSMRA80A01H501UX', 'length-max'),
        ('payer_full_name_71', 'fullName', acc(71), 'length-max'),
        ('payer_street_name_71', 'streetName', ascii_n(71, 's'), 'length-max'),
        ('payer_civic_number_17', 'civicNumber', ascii_n(17, '1'), 'length-max'),
        ('payer_postal_code_17', 'postalCode', ascii_n(17, '0'), 'length-max'),
        ('payer_city_36', 'city', acc(36), 'length-max'),
        ('payer_state_province_region_36', 'stateProvinceRegion', ascii_n(36, 'r'), 'length-max')]:
    invalid(R, slug, rule, path.split('/')[-1], mut=set_(f'{P}/{path}', v))
invalid(R, 'payer_email_element_name', 'unexpected-element', 'email', mut=rename(f'{P}/e-mail', 'email'),
        note='the element is called e-mail')
invalid(R, 'payer_unique_identifier_missing', 'missing-element', 'fullName', mut=rm(f'{P}/uniqueIdentifier'))
invalid(R, 'payer_full_name_missing', 'missing-element', 'streetName', mut=rm(f'{P}/fullName'))
invalid(R, 'payer_city_before_postal_code', 'order', 'postalCode', mut=swap(f'{P}/postalCode', f'{P}/city'))
invalid(R, 'primary_ci_incurred_fee_v1', 'v2-only-element', 'primaryCiIncurredFee',
        mut=ins_after(f'{D}/fee', N('primaryCiIncurredFee', '0.50')))
invalid(R, 'details_empty', 'missing-element', 'paymentMethod', mut=set_(D, None))
valid(R, 'fee_zero', mut=set_(f'{D}/fee', '0.00'))
valid(R, 'payer_email_minimal', mut=set_(f'{P}/e-mail', 'a@b'), note='stEMail accepts a@b')
valid(R, 'payer_email_symbols', mut=set_(f'{P}/e-mail', 'mario.rossi+pagopa_1-x@mail-1.example.co.it'))
valid(R, 'payer_city_35_accented', mut=set_(f'{P}/city', acc(35)))
valid(R, 'payer_full_name_70_accented', mut=set_(f'{P}/fullName', acc(70)))
valid(R, 'payer_entities_and_char_refs', mut=ops(
    set_(f'{P}/fullName', Raw('Mario D&apos;Ang&#233;lo &amp; Figli &lt;srl&gt;')),
    set_(f'{P}/city', Raw('Cant&#xF9;'))), note='predefined entities and character references')
valid(R, 'payer_cdata', mut=set_(f'{P}/streetName', Raw('<![CDATA[Via <Roma> & Co.]]>')), note='CDATA section')
valid(R, 'comments_and_pis_everywhere', mut=ops(
    ins_before('idPSP', Raw('<!-- autenticazione -->')), ins_after('paymentToken', Raw('<?trace id="1"?>')),
    set_(f'{P}/fullName', Raw('Mario<!-- nome --> Rossi')), ins_after(f'{D}/fee', Raw('<!-- fee -->'))),
    note='comments and processing instructions between elements and inside text')
valid(R, 'dates_with_timezones', mut=ops(set_(f'{D}/applicationDate', '2030-01-15Z'),
                                         set_(f'{D}/transferDate', '2030-01-16+14:00')))
valid(R, 'ko_without_details', mut=ops(set_('outcome', 'KO'), rm(D)))

R = 'sendPaymentOutcomeV2Request'
D = 'details'
M = f'{D}/marcheDaBollo'
invalid(R, 'six_payment_tokens', 'too-many', 'paymentToken', mut=repeat('paymentTokens/paymentToken', 6, set_token))
invalid(R, 'payment_tokens_empty', 'missing-element', 'paymentToken', mut=set_('paymentTokens', None))
invalid(R, 'bare_payment_token', 'missing-element', 'paymentToken',
        mut=lambda k: find(k, 'paymentTokens')[0].__setitem__(find(k, 'paymentTokens')[1], N('paymentToken', TOKEN)),
        note='V2 wants the paymentTokens wrapper')
invalid(R, 'payment_token_36', 'length-max', 'paymentToken', mut=set_('paymentTokens/paymentToken', UUID36))
invalid(R, 'twenty_six_marche_da_bollo', 'too-many', 'marcaDaBollo',
        mut=repeat(f'{M}/marcaDaBollo', 26, set_mbd))
invalid(R, 'marche_da_bollo_empty', 'missing-element', 'marcaDaBollo', mut=set_(M, None))
invalid(R, 'mbd_attachment_percent', 'base64', 'MBDAttachment', mut=set_(f'{M}/marcaDaBollo/MBDAttachment', '%%%'),
        oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): libxml2 (hence xsd-check, which decodes only service payloads) accepts '
             '"%%%" as base64Binary; pagonode decodes every base64Binary strictly')
invalid(R, 'mbd_attachment_at_signs', 'base64', 'MBDAttachment', mut=set_(f'{M}/marcaDaBollo/MBDAttachment', '@@@@'),
        oracle='valid', libxml2='valid', note='DIVERGENCE (deliberate): as above, with "@@@@"')
invalid(R, 'mbd_attachment_bad_padding', 'base64', 'MBDAttachment',
        mut=set_(f'{M}/marcaDaBollo/MBDAttachment', MBD[:-2]), note='base64 with the final "==" cut')
invalid(R, 'mbd_attachment_missing', 'missing-element', 'MBDAttachment', mut=rm(f'{M}/marcaDaBollo/MBDAttachment'))
invalid(R, 'marca_id_transfer_6', 'enumeration', 'idTransfer', mut=set_(f'{M}/marcaDaBollo/idTransfer', '6'))
invalid(R, 'marca_payment_token_empty', 'length-min', 'paymentToken', mut=set_(f'{M}/marcaDaBollo/paymentToken', ''))
invalid(R, 'id_bundle_71', 'length-max', 'idBundle', mut=set_(f'{D}/idBundle', ascii_n(71, 'b')))
invalid(R, 'id_ci_bundle_empty', 'empty-element', 'idCiBundle', mut=set_(f'{D}/idCiBundle', None))
invalid(R, 'primary_ci_incurred_fee_negative', 'amount-sign', 'primaryCiIncurredFee',
        mut=set_(f'{D}/primaryCiIncurredFee', '-0.50'))
invalid(R, 'primary_ci_incurred_fee_before_fee', 'order', 'primaryCiIncurredFee',
        mut=swap(f'{D}/fee', f'{D}/primaryCiIncurredFee'))
invalid(R, 'payment_method_ppal', 'enumeration', 'paymentMethod', mut=set_(f'{D}/paymentMethod', 'PPAL'),
        note='the V2 outcome keeps the V1 enumeration')
invalid(R, 'marche_da_bollo_before_dates', 'order', 'marcheDaBollo',
        mut=lambda k: (lambda lst: lst.insert(lst.index(next(x for x in lst if x.name == 'applicationDate')),
                                              lst.pop(len(lst) - 1)))(children(k, D)))
invalid(R, 'outcome_before_payment_tokens', 'order', 'outcome', mut=swap('paymentTokens', 'outcome'))
valid(R, 'mbd_attachment_wrapped', mut=set_(f'{M}/marcaDaBollo/MBDAttachment',
                                             Raw('\n' + '\n'.join(MBD[i:i + 64] for i in range(0, len(MBD), 64)) + '\n')),
      note='line-wrapped base64 (whitespace is allowed in base64Binary)')
valid(R, 'mbd_attachment_empty', mut=set_(f'{M}/marcaDaBollo/MBDAttachment', ''),
      note='empty base64Binary is schema-valid (zero bytes)')
valid(R, 'five_tokens', mut=repeat('paymentTokens/paymentToken', 5, set_token))
valid(R, 'primary_ci_incurred_fee_zero', mut=set_(f'{D}/primaryCiIncurredFee', '0.00'))

for R in ['sendPaymentOutcomeRes', 'sendPaymentOutcomeV2Response', 'paSendRTRes', 'paSendRTV2Response']:
    invalid(R, 'outcome_mixed_case', 'enumeration', 'outcome', mut=set_('outcome', 'Ok'))
    invalid(R, 'fault_string_missing', 'missing-element', 'id', mut=rm('fault/faultString'))
    invalid(R, 'fault_before_outcome', 'order', 'fault', mut=swap('outcome', 'fault'))
    invalid(R, 'fault_twice', 'too-many', 'fault', mut=dup('fault'))
    invalid(R, 'fault_original_fault_code_after_string', 'order', 'originalFaultCode',
            mut=swap('fault/originalFaultCode', 'fault/originalFaultString'))
    valid(R, 'fault_empty_strings', base='min', mut=ins_after('outcome', N('fault', [
        N('faultCode', ''), N('faultString', None), N('id', '')])), note='faultCode/faultString/id are plain xsd:string')
    valid(R, 'fault_serial_signed', base='typ', mut=set_('fault/serial', ' -0042 '), note='xsd:int lexical forms')

R = 'sendPaymentOutcomeRes'
invalid(R, 'payment_token_in_response', 'unexpected-element', 'paymentToken',
        mut=append('', N('paymentToken', TOKEN)))

R = 'nodoChiediCatalogoServiziV2Request'
invalid(R, 'commissione_s', 'enumeration', 'commissione', mut=set_('commissione', 'S'))
invalid(R, 'commissione_lowercase', 'enumeration', 'commissione', mut=set_('commissione', 'y'))
invalid(R, 'categoria_36', 'length-max', 'categoria', mut=set_('categoria', acc(36)))
invalid(R, 'identificativo_dominio_empty', 'empty-element', 'identificativoDominio',
        mut=set_('identificativoDominio', None))
invalid(R, 'password_16', 'length-max', 'password', mut=set_('password', 'p' * 16))
invalid(R, 'identificativo_canale_missing', 'missing-element', 'password', mut=rm('identificativoCanale'))
invalid(R, 'categoria_before_dominio', 'order', 'identificativoDominio',
        mut=swap('identificativoDominio', 'categoria'))
invalid(R, 'psp_auth_names', 'unexpected-element', 'idPSP', mut=rename('identificativoPSP', 'idPSP'),
        note='the catalogue request uses the Italian-style names')
valid(R, 'commissione_y', mut=set_('commissione', 'Y'))

R = 'nodoChiediCatalogoServiziV2Response'
invalid(R, 'xml_catalogo_percent', 'base64', 'xmlCatalogoServizi', mut=set_('xmlCatalogoServizi', '%%%'),
        oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): libxml2 accepts "%%%" as base64Binary; pagonode decodes strictly')
invalid(R, 'xml_catalogo_at_signs', 'base64', 'xmlCatalogoServizi', mut=set_('xmlCatalogoServizi', '@@@@'),
        oracle='valid', libxml2='valid', note='DIVERGENCE (deliberate): as above, with "@@@@"')
invalid(R, 'xml_catalogo_bad_length', 'base64', 'xmlCatalogoServizi', mut=set_('xmlCatalogoServizi', 'cia'))
invalid(R, 'xml_catalogo_twice', 'too-many', 'xmlCatalogoServizi', mut=dup('xmlCatalogoServizi'))
invalid(R, 'xml_catalogo_before_fault', 'order', 'fault', mut=swap('fault', 'xmlCatalogoServizi'))

R = 'paDemandPaymentNoticeRequest'
invalid(R, 'id_servizio_4', 'length', 'idServizio', mut=set_('idServizio', '0001'))
invalid(R, 'id_servizio_missing', 'missing-element', 'idSoggettoServizio', mut=rm('idServizio'))
invalid(R, 'id_station_36', 'length-max', 'idStation', mut=set_('idStation', ascii_n(36, '7')))
invalid(R, 'dati_specifici_psp_name', 'unexpected-element', 'datiSpecificiServizio',
        mut=rename('datiSpecificiServizioRequest', 'datiSpecificiServizio'),
        note='the EC-side element is datiSpecificiServizioRequest')
invalid(R, 'dati_specifici_cia_dollar', 'base64', 'datiSpecificiServizioRequest',
        mut=set_('datiSpecificiServizioRequest', 'cia$'))
invalid(R, 'tassa_auto_plate_6_chars', 'service-payload', 'datiSpecificiServizioRequest',
        mut=set_('datiSpecificiServizioRequest', b64(tassa('1', 'AB123C'))), libxml2='valid')
invalid(R, 'dati_specifici_empty', 'service-payload', 'datiSpecificiServizioRequest',
        mut=set_('datiSpecificiServizioRequest', ''), oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): an empty service document is rejected (xsd-check skips empty text)')
valid(R, 'service_a001_passaporto', mut=set_('datiSpecificiServizioRequest', b64(A001)))
valid(R, 'service_d847_pesca', mut=set_('datiSpecificiServizioRequest', b64(D847)))

R = 'paDemandPaymentNoticeResponse'
PO = 'paymentList/paymentOptionDescription'
invalid(R, 'two_payment_options', 'too-many', 'paymentOptionDescription', mut=dup(PO),
        note='the EC-side option list holds exactly one option')
invalid(R, 'two_payment_lists', 'too-many', 'paymentList', mut=dup('paymentList'))
invalid(R, 'all_ccp_missing', 'missing-element', 'allCCP', mut=rm(f'{PO}/allCCP'))
invalid(R, 'all_ccp_si', 'boolean', 'allCCP', mut=set_(f'{PO}/allCCP', 'si'))
invalid(R, 'all_ccp_empty', 'boolean', 'allCCP', mut=set_(f'{PO}/allCCP', ''))
invalid(R, 'amount_comma', 'amount-format', 'amount', mut=set_(f'{PO}/amount', '1,00'))
invalid(R, 'amount_three_decimals', 'amount-decimals', 'amount', mut=set_(f'{PO}/amount', '10.123'))
invalid(R, 'amount_too_big', 'amount-max', 'amount', mut=set_(f'{PO}/amount', '1000000000.00'))
invalid(R, 'amount_zero', 'amount-not-zero', 'amount', mut=set_(f'{PO}/amount', '0.00'))
invalid(R, 'amount_missing', 'missing-element', 'options', mut=rm(f'{PO}/amount'))
invalid(R, 'options_xx', 'enumeration', 'options', mut=set_(f'{PO}/options', 'XX'))
invalid(R, 'due_date_slashes', 'date-format', 'dueDate', mut=set_(f'{PO}/dueDate', '2030/12/31'))
invalid(R, 'detail_description_141', 'length-max', 'detailDescription',
        mut=set_(f'{PO}/detailDescription', acc(141)))
invalid(R, 'payment_note_ec_side', 'unexpected-element', 'paymentNote',
        mut=rename(f'{PO}/detailDescription', 'paymentNote'), note='the EC side says detailDescription')
invalid(R, 'payment_description_141', 'length-max', 'paymentDescription',
        mut=set_('paymentDescription', acc(141)), note='EC-side paymentDescription is stText140')
invalid(R, 'company_name_empty', 'empty-element', 'companyName', mut=set_('companyName', ''))
invalid(R, 'office_name_141', 'length-max', 'officeName', mut=set_('officeName', ascii_n(141, 'o')))
invalid(R, 'qr_fiscal_code_letter', 'pattern', 'fiscalCode', mut=set_('qrCode/fiscalCode', '7777777777A'))
invalid(R, 'qr_notice_number_19', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '3020001000000094240'))
invalid(R, 'all_ccp_before_detail', 'order', 'detailDescription',
        mut=swap(f'{PO}/detailDescription', f'{PO}/allCCP'))
invalid(R, 'outcome_ko_lowercase', 'enumeration', 'outcome', mut=set_('outcome', 'ko'))
invalid(R, 'payment_list_empty', 'missing-element', 'paymentOptionDescription', mut=set_('paymentList', ''))
valid(R, 'all_ccp_0', mut=set_(f'{PO}/allCCP', '0'))
valid(R, 'all_ccp_padded', mut=set_(f'{PO}/allCCP', ' true '), note='boolean whitespace collapsed')
valid(R, 'amount_max', mut=set_(f'{PO}/amount', '999999999.99'))
valid(R, 'amount_min', mut=set_(f'{PO}/amount', '0.01'))
valid(R, 'ko_without_fault', base='min', mut=set_('outcome', 'KO'),
      note='schema-valid (fault is optional); the node rejects it semantically, not syntactically')

R = 'paVerifyPaymentNoticeReq'
invalid(R, 'id_pa_36', 'length-max', 'idPA', mut=set_('idPA', ascii_n(36, '7')))
invalid(R, 'id_station_empty', 'length-min', 'idStation', mut=set_('idStation', ''))
invalid(R, 'notice_number_19', 'pattern', 'noticeNumber', mut=set_('qrCode/noticeNumber', '3020001000000094240'))
invalid(R, 'password_on_pa_side', 'unexpected-element', 'password', mut=ins_after('idStation', N('password', 'pwdpwdpwd')),
        note='there is no password towards the EC')
invalid(R, 'id_psp_instead_of_id_pa', 'unexpected-element', 'idPSP', mut=rename('idPA', 'idPSP'))

R = 'paVerifyPaymentNoticeRes'
invalid(R, 'standin_not_on_pa_side', 'unexpected-element', 'standin', mut=append('', N('standin', 'false')))
invalid(R, 'two_payment_options', 'too-many', 'paymentOptionDescription', mut=dup(PO))
invalid(R, 'amount_zero', 'amount-not-zero', 'amount', mut=set_(f'{PO}/amount', '0.00'))
invalid(R, 'amount_one_decimal', 'amount-decimals', 'amount', mut=set_(f'{PO}/amount', '10.0'))
invalid(R, 'all_ccp_2', 'boolean', 'allCCP', mut=set_(f'{PO}/allCCP', '2'))
invalid(R, 'fault_code_missing', 'missing-element', 'faultString', mut=rm('fault/faultCode'))
invalid(R, 'fault_id_missing', 'missing-element', 'description', mut=rm('fault/id'))
invalid(R, 'payment_description_empty', 'empty-element', 'paymentDescription', mut=set_('paymentDescription', None))
invalid(R, 'fiscal_code_pa_12', 'pattern', 'fiscalCodePA', mut=set_('fiscalCodePA', '777777777777'))
invalid(R, 'options_lowercase', 'enumeration', 'options', mut=set_(f'{PO}/options', 'eq'))
invalid(R, 'due_date_feb_30', 'date-format', 'dueDate', mut=set_(f'{PO}/dueDate', '2030-02-30'))
invalid(R, 'company_name_before_fiscal_code', 'order', 'fiscalCodePA', mut=swap('fiscalCodePA', 'companyName'))
valid(R, 'ko_fault_only', base='min', mut=ops(set_('outcome', 'KO'), ins_after('outcome', fault(
    'PAA_PAGAMENTO_SCONOSCIUTO', '77777777777', full=False))))
valid(R, 'amount_whitespace_newlines', mut=set_(f'{PO}/amount', Raw('\n          10.00\n        ')))

for R in ['paGetPaymentReq', 'paGetPaymentV2Request']:
    invalid(R, 'transfer_type_poste', 'enumeration', 'transferType', mut=set_('transferType', 'POSTE'))
    invalid(R, 'transfer_type_lowercase', 'enumeration', 'transferType', mut=set_('transferType', 'pagopa'))
    invalid(R, 'amount_no_decimals', 'amount-decimals', 'amount', mut=set_('amount', '10'))
    invalid(R, 'amount_plus_sign', 'amount-sign', 'amount', mut=set_('amount', '+1.00'))
    invalid(R, 'payment_note_211', 'length-max', 'paymentNote', mut=set_('paymentNote', ascii_n(211, 'n')))
    invalid(R, 'due_date_feb_30', 'date-format', 'dueDate', mut=set_('dueDate', '2030-02-30'))
    invalid(R, 'due_date_before_transfer_type', 'order', 'transferType', mut=swap('transferType', 'dueDate'))
    invalid(R, 'qr_code_missing', 'missing-element', 'amount', mut=rm('qrCode'))
    valid(R, 'amount_zero', mut=set_('amount', '0.00'), note='request amount is stAmount: 0.00 allowed')
    valid(R, 'transfer_type_postal', mut=set_('transferType', 'POSTAL'))

for R, v2 in [('paGetPaymentRes', False), ('paGetPaymentV2Response', True)]:
    DT = 'data'
    TR = f'{DT}/transferList/transfer'
    invalid(R, 'data_empty', 'missing-element', 'creditorReferenceId', mut=set_(DT, None))
    invalid(R, 'creditor_reference_id_empty', 'empty-element', 'creditorReferenceId',
            mut=set_(f'{DT}/creditorReferenceId', ''))
    invalid(R, 'creditor_reference_id_36', 'length-max', 'creditorReferenceId',
            mut=set_(f'{DT}/creditorReferenceId', ascii_n(36, '0')))
    invalid(R, 'creditor_reference_id_missing', 'missing-element', 'paymentAmount', mut=rm(f'{DT}/creditorReferenceId'))
    for slug, v, rule in [('payment_amount_zero', '0.00', 'amount-not-zero'),
                          ('payment_amount_comma', '10,00', 'amount-format'),
                          ('payment_amount_three_decimals', '10.001', 'amount-decimals'),
                          ('payment_amount_one_decimal', '10.0', 'amount-decimals'),
                          ('payment_amount_too_big', '1000000000.00', 'amount-max')]:
        invalid(R, slug, rule, 'paymentAmount', mut=set_(f'{DT}/paymentAmount', v))
    invalid(R, 'due_date_missing', 'missing-element', 'retentionDate', mut=rm(f'{DT}/dueDate'))
    invalid(R, 'due_date_bad', 'date-format', 'dueDate', mut=set_(f'{DT}/dueDate', '2030-12-1'))
    invalid(R, 'retention_date_date_only', 'datetime-format', 'retentionDate', mut=set_(f'{DT}/retentionDate', '2031-12-31'),
            note='retentionDate is xsd:dateTime: a date alone is invalid')
    invalid(R, 'retention_date_hour_25', 'datetime-format', 'retentionDate',
            mut=set_(f'{DT}/retentionDate', '2031-12-31T25:00:00'))
    invalid(R, 'last_payment_2', 'boolean', 'lastPayment', mut=set_(f'{DT}/lastPayment', '2'))
    invalid(R, 'description_141', 'length-max', 'description', mut=set_(f'{DT}/description', acc(141)))
    invalid(R, 'description_missing', 'missing-element', 'companyName', mut=rm(f'{DT}/description'))
    invalid(R, 'company_name_empty', 'empty-element', 'companyName', mut=set_(f'{DT}/companyName', ''))
    invalid(R, 'office_name_141', 'length-max', 'officeName', mut=set_(f'{DT}/officeName', ascii_n(141, 'o')))
    invalid(R, 'debtor_missing', 'missing-element', 'transferList', mut=rm(f'{DT}/debtor'))
    invalid(R, 'debtor_unique_identifier_empty', 'missing-element', 'entityUniqueIdentifierType',
            mut=set_(f'{DT}/debtor/uniqueIdentifier', None))
    invalid(R, 'debtor_type_h', 'enumeration', 'entityUniqueIdentifierType',
            mut=set_(f'{DT}/debtor/uniqueIdentifier/entityUniqueIdentifierType', 'H'))
    invalid(R, 'debtor_value_missing', 'missing-element', 'entityUniqueIdentifierValue',
            mut=rm(f'{DT}/debtor/uniqueIdentifier/entityUniqueIdentifierValue'))
    invalid(R, 'debtor_value_17', 'length-max', 'entityUniqueIdentifierValue',
            mut=set_(f'{DT}/debtor/uniqueIdentifier/entityUniqueIdentifierValue', ascii_n(17, 'R')))
    invalid(R, 'debtor_full_name_missing', 'missing-element', 'streetName', mut=rm(f'{DT}/debtor/fullName'))
    invalid(R, 'debtor_country_mixed_case', 'pattern', 'country', mut=set_(f'{DT}/debtor/country', 'It'))
    invalid(R, 'debtor_email_bad', 'pattern', 'e-mail', mut=set_(f'{DT}/debtor/e-mail', 'mario.rossi.example.it'))
    invalid(R, 'transfer_list_missing', 'missing-element', 'metadata', mut=rm(f'{DT}/transferList'))
    invalid(R, 'six_transfers', 'too-many', 'transfer', mut=repeat(TR, 6, lambda i, n: set_id(min(i, 4), n)))
    invalid(R, 'transfer_empty', 'missing-element', 'idTransfer', mut=set_(TR, None))
    invalid(R, 'id_transfer_6', 'enumeration', 'idTransfer', mut=set_(f'{TR}/idTransfer', '6'))
    invalid(R, 'id_transfer_0', 'enumeration', 'idTransfer', mut=set_(f'{TR}/idTransfer', '0'))
    invalid(R, 'transfer_amount_zero', 'amount-not-zero', 'transferAmount', mut=set_(f'{TR}/transferAmount', '0.00'),
            note='EC-side transferAmount is stAmountNotZero')
    invalid(R, 'transfer_amount_no_decimals', 'amount-decimals', 'transferAmount', mut=set_(f'{TR}/transferAmount', '10'))
    invalid(R, 'transfer_fiscal_code_missing', 'missing-element', 'companyName' if v2 else 'IBAN',
            mut=rm(f'{TR}/fiscalCodePA'))
    invalid(R, 'transfer_fiscal_code_bad', 'pattern', 'fiscalCodePA', mut=set_(f'{TR}/fiscalCodePA', '7777777777'))
    invalid(R, 'iban_36', 'length-max', 'IBAN', mut=set_(f'{TR}/IBAN', ascii_n(36, 'I')))
    invalid(R, 'iban_empty', 'length-min', 'IBAN', mut=set_(f'{TR}/IBAN', None))
    invalid(R, 'remittance_information_missing', 'missing-element', 'transferCategory',
            mut=rm(f'{TR}/remittanceInformation'))
    invalid(R, 'transfer_category_missing', 'missing-element', 'metadata', mut=rm(f'{TR}/transferCategory'))
    invalid(R, 'transfer_category_141', 'length-max', 'transferCategory',
            mut=set_(f'{TR}/transferCategory', ascii_n(141, 'c')))
    invalid(R, 'sixteen_map_entries', 'too-many', 'mapEntry', mut=repeat(f'{DT}/metadata/mapEntry', 16, set_key))
    invalid(R, 'metadata_empty', 'missing-element', 'mapEntry', mut=set_(f'{DT}/metadata', None))
    invalid(R, 'map_entry_key_missing', 'missing-element', 'value', mut=rm(f'{DT}/metadata/mapEntry/key'))
    invalid(R, 'data_twice', 'too-many', 'data', mut=dup(DT))
    invalid(R, 'outcome_missing', 'missing-element', 'fault', mut=rm('outcome'))
    valid(R, 'payment_amount_padded', mut=set_(f'{DT}/paymentAmount', Raw('\n\t10.00\n')))
    valid(R, 'id_transfer_plus_one', mut=set_(f'{TR}/idTransfer', '+1'))
    valid(R, 'retention_date_fraction_tz', mut=set_(f'{DT}/retentionDate', '2031-12-31T23:59:59.999+01:00'),
          note='dateTime with fractional seconds and timezone')
    valid(R, 'retention_date_end_of_day', mut=set_(f'{DT}/retentionDate', '2031-12-31T24:00:00'),
          note='24:00:00 is allowed by XSD 1.0 dateTime')
    valid(R, 'last_payment_1', mut=set_(f'{DT}/lastPayment', '1'))
    valid(R, 'pa_iban_free_text', mut=set_(f'{TR}/IBAN', 'IT60 X054 2811 1010 0000 0123 456'),
          note='EC-side stIBAN is 1..35 free text')
    valid(R, 'company_name_140_accented', mut=set_(f'{DT}/companyName', acc(140)))
    valid(R, 'description_cdata_and_refs', mut=set_(f'{DT}/description', Raw('Canone <![CDATA[mensa & trasporto]]> '
                                                                             '&#8364; 10')))
    valid(R, 'minimal_data', base='min', mut=append('', N('data', [
        N('creditorReferenceId', '02000100000009424'), N('paymentAmount', '10.00'), N('dueDate', '2030-12-31'),
        N('description', 'Canone'), *([N('companyName', 'Comune di Esempio')] if v2 else []),
        subject('debtor', full=False), N('transferList', [N('transfer', [
            N('idTransfer', '1'), N('transferAmount', '10.00'), N('fiscalCodePA', '77777777777'),
            N('IBAN', 'IT60X0542811101000000123456'), N('remittanceInformation', 'Mensa'),
            N('transferCategory', '0101101IM')])])])), note='data with its required elements only')
    if v2:
        invalid(R, 'company_name_missing', 'missing-element', 'officeName', mut=rm(f'{DT}/companyName'),
                note='companyName is required in ctPaymentPAV2')
        invalid(R, 'neither_iban_nor_stamp', 'choice', 'remittanceInformation', mut=rm(f'{TR}/IBAN'),
                note='the PA V2 choice IBAN | richiestaMarcaDaBollo is required')
        invalid(R, 'iban_and_stamp', 'choice', 'richiestaMarcaDaBollo', mut=ins_after(f'{TR}/IBAN', stamp()))
        invalid(R, 'mbd_attachment_instead_of_iban', 'choice', 'MBDAttachment',
                mut=set_(TR, [N('idTransfer', '1'), N('transferAmount', '10.00'), N('fiscalCodePA', '77777777777'),
                              N('MBDAttachment', MBD), N('remittanceInformation', 'Mensa'),
                              N('transferCategory', '0101101IM')]),
                note='MBDAttachment is the receipt choice; paGetPaymentV2 wants richiestaMarcaDaBollo')
        invalid(R, 'hash_documento_3', 'pattern', 'hashDocumento',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', N('richiestaMarcaDaBollo', [
                    N('hashDocumento', 'QUI'), N('tipoBollo', '01'), N('provinciaResidenza', 'RM')]))),
                note='base64 of 3 characters is not valid base64 either')
        invalid(R, 'provincia_digits', 'pattern', 'provinciaResidenza',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', N('richiestaMarcaDaBollo', [
                    N('hashDocumento', HASH), N('tipoBollo', '01'), N('provinciaResidenza', 'R1')]))))
        invalid(R, 'transfer_company_name_141', 'length-max', 'companyName',
                mut=set_(f'{TR}/companyName', ascii_n(141, 'c')))
        valid(R, 'stamp_transfer', mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', stamp())),
              note='richiestaMarcaDaBollo in place of the IBAN')
        valid(R, 'transfer_without_company_name', mut=rm(f'{TR}/companyName'))
    else:
        invalid(R, 'stamp_in_v1', 'v2-only-element', 'richiestaMarcaDaBollo',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/fiscalCodePA', stamp())),
                note='the V1 EC transfer has no richiestaMarcaDaBollo')
        invalid(R, 'transfer_company_name_v1', 'v2-only-element', 'companyName',
                mut=ins_after(f'{TR}/fiscalCodePA', N('companyName', 'Comune di Esempio')))
        valid(R, 'without_company_name', mut=rm(f'{DT}/companyName'), note='companyName is optional in V1 data')

for R, v2 in [('paSendRTReq', False), ('paSendRTV2Request', True)]:
    RC = 'receipt'
    TR = f'{RC}/transferList/transfer'
    invalid(R, 'standin_lowercase', 'casing', 'standin', mut=rename(f'{RC}/standIn', 'standin'),
            note='the receipt says standIn (capital I)')
    invalid(R, 'stand_in_true_uppercase', 'boolean', 'standIn', mut=set_(f'{RC}/standIn', 'TRUE'))
    invalid(R, 'stand_in_at_request_level', 'unexpected-element', 'standIn', mut=append('', N('standIn', 'false')),
            note='standIn moved inside receipt in SANP 3.9.0')
    invalid(R, 'psp_company_name_missing', 'missing-element', 'idChannel', mut=rm(f'{RC}/PSPCompanyName'))
    invalid(R, 'psp_company_name_casing', 'casing', 'pspCompanyName', mut=rename(f'{RC}/PSPCompanyName', 'pspCompanyName'))
    invalid(R, 'channel_description_missing', 'missing-element', 'payer', mut=rm(f'{RC}/channelDescription'))
    invalid(R, 'channel_description_36', 'length-max', 'channelDescription',
            mut=set_(f'{RC}/channelDescription', acc(36)))
    invalid(R, 'company_name_missing', 'missing-element', 'officeName', mut=rm(f'{RC}/companyName'),
            note='companyName is required in the receipt')
    invalid(R, 'debtor_missing', 'missing-element', 'transferList', mut=rm(f'{RC}/debtor'))
    invalid(R, 'payment_date_time_date_only', 'datetime-format', 'paymentDateTime',
            mut=set_(f'{RC}/paymentDateTime', '2030-01-15'))
    invalid(R, 'payment_date_time_space', 'datetime-format', 'paymentDateTime',
            mut=set_(f'{RC}/paymentDateTime', '2030-01-15 10:20:30'))
    invalid(R, 'payment_date_time_hour_25', 'datetime-format', 'paymentDateTime',
            mut=set_(f'{RC}/paymentDateTime', '2030-01-15T25:20:30'))
    invalid(R, 'payment_date_time_leap_second', 'datetime-format', 'paymentDateTime',
            mut=set_(f'{RC}/paymentDateTime', '2030-01-15T23:59:60'))
    invalid(R, 'payment_date_time_no_seconds', 'datetime-format', 'paymentDateTime',
            mut=set_(f'{RC}/paymentDateTime', '2030-01-15T10:20'))
    invalid(R, 'payment_amount_three_decimals', 'amount-decimals', 'paymentAmount',
            mut=set_(f'{RC}/paymentAmount', '0.001'))
    invalid(R, 'psp_partita_iva_21', 'length-max', 'pspPartitaIVA', mut=set_(f'{RC}/pspPartitaIVA', ascii_n(21, '1')))
    invalid(R, 'psp_fiscal_code_71', 'length-max', 'pspFiscalCode', mut=set_(f'{RC}/pspFiscalCode', ascii_n(71, '1')))
    invalid(R, 'payment_method_36', 'length-max', 'paymentMethod', mut=set_(f'{RC}/paymentMethod', ascii_n(36, 'm')))
    invalid(R, 'fee_one_decimal', 'amount-decimals', 'fee', mut=set_(f'{RC}/fee', '1.5'))
    invalid(R, 'transfer_category_missing', 'missing-element', 'metadata', mut=rm(f'{TR}/transferCategory'))
    invalid(R, 'transfer_amount_zero', 'amount-not-zero', 'transferAmount', mut=set_(f'{TR}/transferAmount', '0.00'))
    invalid(R, 'six_transfers', 'too-many', 'transfer', mut=repeat(TR, 6, lambda i, n: set_id(min(i, 4), n)))
    invalid(R, 'notice_number_17', 'pattern', 'noticeNumber', mut=set_(f'{RC}/noticeNumber', '30200010000000942'))
    invalid(R, 'receipt_outcome_bad', 'enumeration', 'outcome', mut=set_(f'{RC}/outcome', 'PAID'))
    invalid(R, 'application_date_bad', 'date-format', 'applicationDate', mut=set_(f'{RC}/applicationDate', '2030-1-15'))
    invalid(R, 'id_psp_missing', 'missing-element', 'pspFiscalCode', mut=rm(f'{RC}/idPSP'))
    invalid(R, 'receipt_missing', 'missing-element', 'receipt', mut=rm(RC))
    invalid(R, 'id_psp_before_transfer_list', 'order', 'idPSP', mut=swap(f'{RC}/transferList', f'{RC}/idPSP'))
    invalid(R, 'payer_country_lowercase', 'pattern', 'country', mut=set_(f'{RC}/payer/country', 'it'))
    valid(R, 'payment_amount_zero_fee_zero', mut=ops(set_(f'{RC}/paymentAmount', '0.00'), set_(f'{RC}/fee', '0.00')),
          note='receipt paymentAmount and fee are stAmount')
    valid(R, 'receipt_id_empty', mut=set_(f'{RC}/receiptId', ''), note='receiptId is an unrestricted xsd:string')
    valid(R, 'stand_in_1', mut=set_(f'{RC}/standIn', '1'))
    valid(R, 'payment_date_time_micros', mut=set_(f'{RC}/paymentDateTime', '2030-01-15T10:20:30.123456'))
    valid(R, 'payment_date_time_utc_fraction', mut=set_(f'{RC}/paymentDateTime', '2030-01-15T10:20:30.5Z'))
    valid(R, 'channel_description_35_accented', mut=set_(f'{RC}/channelDescription', acc(35)))
    valid(R, 'payment_method_free_text', mut=set_(f'{RC}/paymentMethod', 'Carta di credito (POS) è ok'),
          note='receipt paymentMethod is free stText35')
    if v2:
        invalid(R, 'iban_and_mbd_attachment', 'choice', 'MBDAttachment', mut=ins_after(f'{TR}/IBAN', N('MBDAttachment', MBD)))
        invalid(R, 'neither_iban_nor_mbd_attachment', 'choice', 'remittanceInformation', mut=rm(f'{TR}/IBAN'))
        invalid(R, 'stamp_request_in_receipt', 'choice', 'richiestaMarcaDaBollo',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', stamp())),
                note='the receipt carries the bought stamp (MBDAttachment), not the request')
        invalid(R, 'mbd_attachment_percent', 'base64', 'MBDAttachment',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', N('MBDAttachment', '%%%'))),
                oracle='valid', libxml2='valid',
                note='DIVERGENCE (deliberate): libxml2 accepts "%%%" as base64Binary; pagonode decodes strictly')
        invalid(R, 'mbd_attachment_at_signs', 'base64', 'MBDAttachment',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', N('MBDAttachment', '@@@@'))),
                oracle='valid', libxml2='valid', note='DIVERGENCE (deliberate): as above, with "@@@@"')
        invalid(R, 'mbd_attachment_cia_dollar', 'base64', 'MBDAttachment',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName', N('MBDAttachment', 'cia$'))))
        invalid(R, 'id_bundle_71', 'length-max', 'idBundle', mut=set_(f'{RC}/idBundle', ascii_n(71, 'b')))
        invalid(R, 'primary_ci_incurred_fee_before_fee', 'order', 'fee',
                mut=swap(f'{RC}/fee', f'{RC}/primaryCiIncurredFee'))
        invalid(R, 'payment_note_211', 'length-max', 'paymentNote', mut=set_(f'{RC}/paymentNote', acc(211)))
        invalid(R, 'payment_note_after_fee', 'order', 'paymentNote', mut=swap(f'{RC}/paymentNote', f'{RC}/fee'))
        valid(R, 'mbd_attachment_transfer', mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/companyName',
                                                                               N('MBDAttachment', MBD))),
              note='receipt V2 transfer with the stamp document in place of the IBAN')
    else:
        invalid(R, 'payment_note_v1', 'v2-only-element', 'paymentNote',
                mut=ins_after(f'{RC}/paymentMethod', N('paymentNote', 'Pagamento mensa')),
                note='paymentNote exists only in the V2 receipt')
        invalid(R, 'id_bundle_v1', 'v2-only-element', 'idBundle', mut=ins_after(f'{RC}/fee', N('idBundle', 'b')))
        invalid(R, 'mbd_attachment_v1', 'v2-only-element', 'MBDAttachment',
                mut=ops(rm(f'{TR}/IBAN'), ins_after(f'{TR}/fiscalCodePA', N('MBDAttachment', MBD))))
        invalid(R, 'iban_missing', 'missing-element', 'remittanceInformation', mut=rm(f'{TR}/IBAN'))

for R in ['paSendRTRes', 'paSendRTV2Response']:
    invalid(R, 'receipt_in_response', 'unexpected-element', 'receipt', mut=append('', N('receipt', '')))

# ---------------- legacy messages ------------------------------------------------------------
invalid('verificaBollettinoReq', 'cc_post_11', 'pattern', 'ccPost', mut=set_('ccPost', '01234567890'))
invalid('verificaBollettinoReq', 'notice_number_missing', 'missing-element', 'noticeNumber', mut=rm('noticeNumber'))
invalid('verificaBollettinoRes', 'all_ccp_missing', 'missing-element', 'allCCP',
        mut=rm('paymentBollettinoList/paymentOptionDescription/allCCP'))
invalid('verificaBollettinoRes', 'standin_master', 'unexpected-element', 'standin', mut=append('', N('standin', 'true')),
        note='standin on verificaBollettinoRes exists only on newer release branches, not in this contract')
invalid('nodoInviaFlussoRendicontazioneRequest', 'data_ora_flusso_date_only', 'datetime-format', 'dataOraFlusso',
        mut=set_('dataOraFlusso', '2030-01-16'))
invalid('nodoInviaFlussoRendicontazioneResponse', 'outcome_instead_of_esito', 'unexpected-element', 'outcome',
        base='min', mut=rename('esito', 'outcome'), note='legacy risposta has esito, no outcome')
invalid('nodoChiediTemplateInformativaPSPRequest', 'password_7', 'length-min', 'password',
        mut=set_('password', 'pwdpwdp'))
invalid('nodoChiediInformativaPARequest', 'order', 'order', 'identificativoPSP',
        mut=swap('identificativoPSP', 'identificativoIntermediarioPSP'))
invalid('nodoChiediInformativaPAResponse', 'outcome_not_in_risposta', 'unexpected-element', 'outcome',
        mut=ins_before('fault', N('outcome', 'OK')))

# ---------------- envelope, namespaces, XML -------------------------------------------------
HDR = ('  <soapenv:Header>\n    <h:trace xmlns:h="urn:esempio:trace" soapenv:mustUnderstand="1">'
       'id-1</h:trace>\n  </soapenv:Header>\n')
valid('activatePaymentNoticeReq', 'soap_header_entry', opts={'header': HDR},
      note='SOAP Header with a namespace-qualified entry (mustUnderstand="1")')
valid('paGetPaymentRes', 'soap_header_entries', opts={'header': (
    '  <soapenv:Header>\n    <wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">paGetPayment</wsa:Action>\n'
    '    <h:x xmlns:h="urn:h" soapenv:mustUnderstand="0" soapenv:actor="http://esempio.it/attore"><h:y>1</h:y>'
    'testo</h:x>\n  </soapenv:Header>\n')}, note='several header entries, nested content, actor attribute')
valid('verifyPaymentNoticeReq', 'empty_soap_header', opts={'header': '  <soapenv:Header/>\n'})
invalid('verifyPaymentNoticeReq', 'header_entry_unqualified', 'header-entry', '-',
        opts={'header': '  <soapenv:Header>\n    <trace>id-1</trace>\n  </soapenv:Header>\n'},
        note='Header entries are xs:any namespace="##other": they must be qualified')
invalid('verifyPaymentNoticeReq', 'header_entry_soap_namespace', 'header-entry', '-',
        opts={'header': '  <soapenv:Header>\n    <soapenv:trace>id-1</soapenv:trace>\n  </soapenv:Header>\n'})
invalid('verifyPaymentNoticeReq', 'header_after_body', 'envelope-order', '-',
        opts={'after_body': '  <soapenv:Header/>\n'})
invalid('verifyPaymentNoticeReq', 'two_headers', 'envelope-order', '-',
        opts={'header': '  <soapenv:Header/>\n  <soapenv:Header/>\n'})
invalid('activatePaymentNoticeReq', 'header_must_understand_true', 'envelope-attribute', '-',
        opts={'header': HDR.replace('mustUnderstand="1"', 'mustUnderstand="true"')},
        note='soapenv:mustUnderstand is restricted to the lexical values 0 and 1')
invalid('activatePaymentNoticeReq', 'body_must_understand_true', 'envelope-attribute', '-',
        opts={'body_attrs': ' soapenv:mustUnderstand="true"'},
        note='soapenv:mustUnderstand is restricted to 0|1 wherever it appears')
valid('activatePaymentNoticeReq', 'body_attributes', opts={'body_attrs': ' Id="body-1" soapenv:mustUnderstand="1"'},
      note='soapenv:Body takes any attribute')
invalid('activatePaymentNoticeReq', 'envelope_attribute_unqualified', 'envelope-attribute', '-',
        opts={'env_attrs': ' version="1.1"'}, note='Envelope attributes must be namespace-qualified (##other)')
invalid('activatePaymentNoticeReq', 'envelope_attribute_soap_namespace', 'envelope-attribute', '-',
        opts={'env_attrs': ' soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"'},
        note='Envelope attributes must not be in the SOAP namespace (##other)')
valid('activatePaymentNoticeReq', 'envelope_attribute_other_namespace',
      opts={'env_attrs': ' xmlns:x="urn:esempio" x:versione="1"'})
valid('sendPaymentOutcomeReq', 'element_after_body', opts={'after_body': '  <x:extra xmlns:x="urn:esempio">1</x:extra>\n'},
      note='Envelope allows namespace-qualified elements after the Body')
invalid('sendPaymentOutcomeReq', 'unqualified_element_after_body', 'envelope-order', '-',
        opts={'after_body': '  <extra>1</extra>\n'})
invalid('sendPaymentOutcomeReq', 'body_twice', 'envelope-order', '-',
        post=lambda t: t.replace('</soapenv:Envelope>', '  <soapenv:Body/>\n</soapenv:Envelope>'))
invalid('sendPaymentOutcomeReq', 'two_body_children', 'body-children', '-',
        post=lambda t: t.replace('  </soapenv:Body>', '    <nfp:sendPaymentOutcomeRes><outcome>OK</outcome>'
                                                      '</nfp:sendPaymentOutcomeRes>\n  </soapenv:Body>'),
        note='document/literal: the Body holds exactly one part')
invalid('sendPaymentOutcomeReq', 'text_in_body', 'text-in-element-only', '-',
        post=sub('<soapenv:Body>', '<soapenv:Body>testo'))
invalid('sendPaymentOutcomeReq', 'text_in_envelope', 'text-in-element-only', '-',
        post=sub('<soapenv:Body>', 'testo<soapenv:Body>'))
invalid('sendPaymentOutcomeReq', 'no_envelope', 'no-envelope', '-',
        post=lambda t: re.sub(r'.*<soapenv:Body>\n(.*)  </soapenv:Body>\n.*', r'\1', t, flags=re.S).replace(
            '<nfp:sendPaymentOutcomeReq>', f'<nfp:sendPaymentOutcomeReq xmlns:nfp="{NS["nfp"]}">'),
        note='a bare payload without the SOAP envelope')
invalid('sendPaymentOutcomeReq', 'envelope_no_namespace', 'envelope-namespace', '-',
        post=lambda t: t.replace(f'xmlns:soapenv="{NS_SOAP}"', 'xmlns:soapenv="urn:not-soap"'))
valid('activatePaymentNoticeReq', 'xml_declaration_utf8', opts={'decl': '<?xml version="1.0" encoding="UTF-8"?>\n'},
      mut=set_('paymentNote', 'Mensa à la carte'))
valid('activatePaymentNoticeReq', 'xml_declaration_lowercase_utf8',
      opts={'decl': "<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n"})
valid('activatePaymentNoticeReq', 'utf8_bom', opts={'decl': '<?xml version="1.0" encoding="UTF-8"?>\n'},
      post_bytes=lambda b: b'\xef\xbb\xbf' + b)
valid('paSendRTReq', 'iso_8859_1', opts={'decl': '<?xml version="1.0" encoding="ISO-8859-1"?>\n'},
      mut=set_('receipt/debtor/fullName', 'Niccolò Citterà'), encoding='latin-1',
      note='declared ISO-8859-1 document with accented letters')
invalid('activatePaymentNoticeReq', 'invalid_utf8', 'not-well-formed', '-',
        mut=set_('paymentNote', 'Mensa X'), post_bytes=lambda b: b.replace(b'Mensa X', b'Mensa \xe9'),
        note='a Latin-1 byte in a UTF-8 document')
invalid('activatePaymentNoticeReq', 'xml_declaration_not_first', 'not-well-formed', '-',
        opts={'decl': '\n<?xml version="1.0" encoding="UTF-8"?>\n'})
invalid('activatePaymentNoticeReq', 'doctype', 'doctype', '-',
        opts={'decl': '<?xml version="1.0"?>\n<!DOCTYPE soapenv:Envelope>\n'}, oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): SOAP 1.1 messages must not contain a DTD; libxml2 parses it')
invalid('activatePaymentNoticeReq', 'undefined_entity', 'not-well-formed', '-',
        mut=set_('paymentNote', Raw('Mensa&nbsp;scolastica')))
invalid('activatePaymentNoticeReq', 'control_character', 'not-well-formed', '-',
        mut=set_('paymentNote', 'Mensa\x01scolastica'), note='U+0001 is not an XML 1.0 character')
invalid('activatePaymentNoticeReq', 'control_character_reference', 'not-well-formed', '-',
        mut=set_('paymentNote', Raw('Mensa&#1;scolastica')))
invalid('activatePaymentNoticeReq', 'unescaped_ampersand', 'not-well-formed', '-',
        mut=set_('paymentNote', Raw('Mensa & scolastica')))
invalid('activatePaymentNoticeReq', 'unescaped_less_than', 'not-well-formed', '-',
        mut=set_('paymentNote', Raw('Mensa < scolastica')))
invalid('activatePaymentNoticeReq', 'two_roots', 'not-well-formed', '-',
        post=lambda t: t + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>\n')
invalid('activatePaymentNoticeReq', 'text_after_root', 'not-well-formed', '-', post=lambda t: t + 'fine\n')
invalid('activatePaymentNoticeReq', 'element_name_starts_with_digit', 'not-well-formed', '-',
        mut=ins_after('amount', N('1dueDate', '2030-12-31')))
invalid('activatePaymentNoticeReq', 'element_name_bad_character', 'not-well-formed', '-',
        mut=ins_after('amount', N('due$Date', '2030-12-31')))
invalid('activatePaymentNoticeReq', 'unbound_child_prefix', 'not-well-formed', '-', mut=rename('amount', 'x:amount'))
invalid('activatePaymentNoticeReq', 'undeclared_prefix_binding', 'not-well-formed', '-',
        mut=attr('amount', 'xmlns:nfp', ''), note='xmlns:p="" is illegal in XML 1.0 namespaces')
invalid('activatePaymentNoticeReq', 'duplicate_attribute', 'not-well-formed', '-',
        opts={'env_attrs': ' xmlns:x="urn:x" x:a="1" x:a="2"'})
invalid('activatePaymentNoticeReq', 'unclosed_comment', 'not-well-formed', '-',
        mut=ins_after('amount', Raw('<!-- commento ')))
invalid('activatePaymentNoticeReq', 'double_hyphen_in_comment', 'not-well-formed', '-',
        mut=ins_after('amount', Raw('<!-- a -- b -->')))
invalid('activatePaymentNoticeReq', 'empty_document', 'not-well-formed', '-', post=lambda t: '')
invalid('activatePaymentNoticeReq', 'xsi_type', 'attribute', 'amount',
        mut=attr('amount', 'xsi:type', 'xsd:decimal'),
        opts={'env_attrs': f' xmlns:xsi="{XSI}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'},
        note='xsi:type is refused (no type substitution in the contract)')
invalid('activatePaymentNoticeReq', 'xml_lang_attribute', 'attribute', 'paymentNote',
        mut=attr('paymentNote', 'xml:lang', 'it'))
invalid('activatePaymentNoticeReq', 'soap_attribute_on_payload', 'attribute', 'activatePaymentNoticeReq',
        opts={'root_attrs': ' soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"'},
        note='the payload root declares no attributes (SOAP encoding is not used)')
valid('activatePaymentNoticeReq', 'xsi_schema_location', opts={
    'env_attrs': f' xmlns:xsi="{XSI}"',
    'root_attrs': f' xsi:schemaLocation="{NS["nfp"]} nodeForPsp.xsd"'}, note='schema location hints are allowed')
valid('activatePaymentNoticeReq', 'xsi_schema_location_on_envelope', opts={
    'env_attrs': f' xmlns:xsi="{XSI}" xsi:schemaLocation="{NS_SOAP} envelope.xsd"'})


def reset_children(k):
    for n in k:
        if isinstance(n, N):
            n.attrs.append(('xmlns', ''))


valid('activatePaymentNoticeReq', 'default_namespace_root_children_reset', mut=reset_children,
      opts={'root_default_ns': True}, note='xmlns on the root, xmlns="" on each child')
valid('paGetPaymentV2Response', 'default_namespace_root_children_reset', mut=reset_children,
      opts={'root_default_ns': True})
valid('verifyPaymentNoticeRes', 'default_namespace_root_children_reset',
      opts={'root_default_ns': True}, mut=reset_children)
valid('sendPaymentOutcomeRes', 'default_namespace_empty_fault_code', base='min', mut=ops(
    ins_after('outcome', N('fault', [N('faultCode', None), N('faultString', 'x'), N('id', 'y')])), reset_children),
    opts={'root_default_ns': True}, note='an empty simple element inside a child that resets the default namespace')
invalid('sendPaymentOutcomeRes', 'default_namespace_empty_then_bad_serial', 'integer', 'serial', base='min', mut=ops(
    ins_after('outcome', N('fault', [N('faultCode', ''), N('faultString', None), N('id', 'y'), N('serial', 'x')])),
    reset_children), opts={'root_default_ns': True})
valid('activatePaymentNoticeV2Request', 'jaxws_prefixes', opts={'soap_prefix': 'S', 'prefix': 'ns2'},
      note='alternative prefixes (S:, ns2:) as JAX-WS writes them')
valid('paSendRTV2Request', 'alternative_prefixes', opts={'soap_prefix': 'soap', 'prefix': 'pa'})
valid('sendPaymentOutcomeV2Request', 'soap_default_namespace', mut=reset_children, opts={'soap_default_ns': True},
      note='SOAP namespace as default namespace; payload children reset with xmlns=""')
invalid('sendPaymentOutcomeV2Request', 'soap_default_namespace_leak', 'qualified-child', 'idPSP',
        opts={'soap_default_ns': True},
        note='with the SOAP namespace as default, unprefixed payload children are in the SOAP namespace')
valid('paVerifyPaymentNoticeReq', 'namespace_declared_on_body',
      post=lambda t: t.replace(f' xmlns:pafn="{NS["pafn"]}"', '', 1).replace(
          '<soapenv:Body>', f'<soapenv:Body xmlns:pafn="{NS["pafn"]}">'))
valid('paVerifyPaymentNoticeReq', 'namespace_declared_on_root',
      post=lambda t: t.replace(f' xmlns:pafn="{NS["pafn"]}"', '', 1).replace(
          '<pafn:paVerifyPaymentNoticeReq>', f'<pafn:paVerifyPaymentNoticeReq xmlns:pafn="{NS["pafn"]}">'))
valid('paVerifyPaymentNoticeReq', 'crlf_line_endings', post=lambda t: t.replace('\n', '\r\n'))
valid('paVerifyPaymentNoticeReq', 'single_line', post=lambda t: re.sub(r'>\s+<', '><', t).strip())
valid('paVerifyPaymentNoticeReq', 'comments_outside_root', post=lambda t: '<!-- prima -->\n' + t + '<!-- dopo -->\n')
valid('paVerifyPaymentNoticeReq', 'cdata_whitespace_between_elements', mut=ins_after('idPA', Raw('<![CDATA[ \n ]]>')),
      note='whitespace-only CDATA between elements is whitespace')
valid('paVerifyPaymentNoticeReq', 'char_ref_whitespace_between_elements', mut=ins_after('idPA', Raw('&#32;&#x9;&#10;')),
      note='character references to whitespace between elements are whitespace')
invalid('paVerifyPaymentNoticeReq', 'cdata_text_between_elements', 'text-in-element-only', 'paVerifyPaymentNoticeReq',
        mut=ins_after('idPA', Raw('<![CDATA[x]]>')))
invalid('paVerifyPaymentNoticeReq', 'char_ref_text_between_elements', 'text-in-element-only',
        'paVerifyPaymentNoticeReq', mut=ins_after('idPA', Raw('&#65;')))
invalid('paVerifyPaymentNoticeReq', 'nbsp_between_elements', 'text-in-element-only', 'paVerifyPaymentNoticeReq',
        mut=ins_after('idPA', Raw('\u00a0')), note='NO-BREAK SPACE is not XML whitespace')
invalid('paVerifyPaymentNoticeReq', 'element_in_simple_content', 'text-in-simple', 'idPA',
        mut=set_('idPA', [N('b', '77777777777')]))
invalid('paVerifyPaymentNoticeReq', 'payload_in_other_interface_namespace', 'root-namespace',
        'paVerifyPaymentNoticeReq', opts={'ns': NS['nfp'], 'prefix': 'nfp'},
        note='a paForNode message in the nodeForPsp namespace')
invalid('verifyPaymentNoticeReq', 'unqualified_root', 'root-namespace', 'verifyPaymentNoticeReq',
        post=lambda t: t.replace('nfp:verifyPaymentNoticeReq', 'verifyPaymentNoticeReq'))
invalid('verifyPaymentNoticeReq', 'unknown_root', 'root-namespace', 'verifyPaymentNoticeRequest',
        post=lambda t: t.replace('nfp:verifyPaymentNoticeReq', 'nfp:verifyPaymentNoticeRequest'),
        note='V1 verify is ...Req, not ...Request')
invalid('activatePaymentNoticeV2Request', 'v1_suffix', 'root-namespace', 'activatePaymentNoticeV2Req',
        post=lambda t: t.replace('nfp:activatePaymentNoticeV2Request', 'nfp:activatePaymentNoticeV2Req'))


def soap_fault(inner, attrs=''):
    """A post-processor putting a SOAP 1.1 Fault in the Body in place of the payload."""
    def f(text):
        return re.sub(r'    <(\w+):(\w+)>\n.*    </\1:\2>\n',
                      lambda m: f'    <soapenv:Fault{attrs}>\n      {inner}\n    </soapenv:Fault>\n', text, flags=re.S)
    return f


FC = '<faultcode>soapenv:Server</faultcode><faultstring>Errore interno</faultstring>'
for R in ['paGetPaymentRes', 'paSendRTV2Response']:
    valid(R, 'soap_fault_minimal', base='min', post=soap_fault(FC),
          note='a SOAP 1.1 Fault in place of the response (valid envelope; not a pagoPA message)')
valid('paGetPaymentRes', 'soap_fault_code_unprefixed', base='min',
      post=soap_fault('<faultcode>Server</faultcode><faultstring>x</faultstring>'))
valid('paGetPaymentRes', 'soap_fault_code_prefix_bound_locally', base='min',
      post=soap_fault('<faultcode xmlns:ec="urn:esempio:errori">ec:Sintassi</faultcode><faultstring>x</faultstring>'))
valid('paGetPaymentRes', 'soap_fault_detail_attributes_and_actor', base='min',
      post=soap_fault(FC + '<faultactor>http://ec.esempio.it/stazione?x=%20</faultactor><detail xmlns:e="urn:e" '
                      'e:codice="1" id="d1"><e:errore e:livello="2">testo <b>libero</b></e:errore></detail>'),
      note='detail takes any attribute; its entries are lax')
valid('paGetPaymentRes', 'soap_fault_empty_detail', base='min', post=soap_fault(FC + '<detail/>'))
for slug, inner, attrs, rule, field, note in [
        ('soap_fault_code_unbound_prefix', '<faultcode>zz:Server</faultcode><faultstring>x</faultstring>', '',
         'qname', 'faultcode', 'the QName prefix must be bound in scope'),
        ('soap_fault_code_empty', '<faultcode/><faultstring>x</faultstring>', '', 'qname', 'faultcode', ''),
        ('soap_fault_code_not_qname', '<faultcode>1:Server</faultcode><faultstring>x</faultstring>', '', 'qname',
         'faultcode', ''),
        ('soap_fault_string_missing', '<faultcode>soapenv:Server</faultcode>', '', 'missing-element', 'faultstring', ''),
        ('soap_fault_text_in_detail', FC + '<detail>testo</detail>', '', 'text-in-element-only', 'detail',
         'detail is element-only'),
        ('soap_fault_attribute', FC, ' codice="1"', 'attribute', 'Fault', 'the Fault type declares no attributes'),
        ('soap_fault_unknown_child', FC + '<errore>1</errore>', '', 'unexpected-element', 'errore', ''),
        ('soap_fault_actor_bad_escape', FC + '<faultactor>http://ec.esempio.it/%zz</faultactor>', '', 'any-uri',
         'faultactor', '% must start a %XX escape'),
        ('soap_fault_actor_two_fragments', FC + '<faultactor>http://ec.esempio.it/#a#b</faultactor>', '', 'any-uri',
         'faultactor', ''),
        ('soap_fault_qualified_children',
         '<soapenv:faultcode>soapenv:Server</soapenv:faultcode><soapenv:faultstring>x</soapenv:faultstring>', '',
         'qualified-child', 'faultcode', 'Fault children are unqualified')]:
    invalid('paGetPaymentRes', slug, rule, field, base='min', post=soap_fault(inner, attrs), note=note)
invalid('paGetPaymentRes', 'soap_fault_and_response', 'body-children', '-', base='min',
        post=lambda t: t.replace('  </soapenv:Body>', f'    <soapenv:Fault>{FC}</soapenv:Fault>\n  </soapenv:Body>'))

# ---------------- XML well-formedness details ------------------------------------------------
R = 'paVerifyPaymentNoticeReq'
for slug, decl in [('xml_declaration_standalone_maybe', '<?xml version="1.0" standalone="maybe"?>\n'),
                   ('xml_declaration_without_version', '<?xml encoding="UTF-8"?>\n'),
                   ('xml_declaration_mismatched_quotes', '<?xml version="1.0\' encoding="UTF-8"?>\n'),
                   ('xml_declaration_bad_encoding_name', '<?xml version="1.0" encoding="8bit"?>\n')]:
    invalid(R, slug, 'not-well-formed', '-', opts={'decl': decl})
invalid(R, 'us_ascii_with_non_ascii', 'not-well-formed', '-', mut=set_('idStation', 'Città'),
        opts={'decl': '<?xml version="1.0" encoding="US-ASCII"?>\n'}, note='non-ASCII bytes in a US-ASCII document')
valid(R, 'us_ascii_declared', opts={'decl': '<?xml version="1.0" encoding="US-ASCII"?>\n'},
      mut=set_('idStation', Raw('Citt&#224;')))
invalid(R, 'cdata_end_in_text', 'not-well-formed', '-', mut=set_('idStation', Raw('a]]>b')),
        note="']]>' may only close a CDATA section")
valid(R, 'escaped_cdata_end_in_text', mut=set_('idStation', Raw('a]]&gt;b')))
invalid(R, 'less_than_in_attribute', 'not-well-formed', '-', opts={'body_attrs': ' a="&lt;&lt;<"'})
invalid(R, 'undefined_entity_in_attribute', 'not-well-formed', '-', opts={'body_attrs': ' a="&euro;"'})
invalid(R, 'control_char_ref_in_attribute', 'not-well-formed', '-', opts={'body_attrs': ' a="&#1;"'})
invalid(R, 'same_expanded_attribute_twice', 'not-well-formed', '-',
        opts={'body_attrs': ' xmlns:a="urn:u" xmlns:b="urn:u" a:x="1" b:x="2"'},
        note='a:x and b:x are the same attribute when a and b are bound to one URI')
invalid(R, 'xmlns_namespace_bound', 'not-well-formed', '-',
        opts={'body_attrs': ' xmlns:q="http://www.w3.org/2000/xmlns/"'})
invalid(R, 'xml_prefix_rebound', 'not-well-formed', '-', opts={'body_attrs': ' xmlns:xml="urn:x"'})
invalid(R, 'surrogate_char_ref', 'not-well-formed', '-', mut=set_('idStation', Raw('&#xD800;')))
invalid(R, 'nul_char_ref', 'not-well-formed', '-', mut=set_('idStation', Raw('&#0;')))
invalid(R, 'fffe_char_ref', 'not-well-formed', '-', mut=set_('idStation', Raw('&#xFFFE;')))
invalid(R, 'uppercase_x_char_ref', 'not-well-formed', '-', mut=set_('idStation', Raw('&#X41;')))
invalid(R, 'nul_byte', 'not-well-formed', '-', mut=set_('idStation', 'a\x00b'))
invalid(R, 'colon_element_name', 'not-well-formed', '-', mut=rename('idPA', ':idPA'))
valid(R, 'astral_char_ref', mut=set_('idStation', Raw('&#x1F600;&#128512;')))
valid(R, 'whitespace_in_tags', post=lambda t: t.replace('<idPA>', '<idPA\n  >').replace('</idPA>', '</idPA  >'))
valid(R, 'cr_only_line_endings', post=lambda t: t.replace('\n', '\r'))
valid(R, 'stylesheet_pi_before_root', opts={'decl': '<?xml version="1.0"?>\n<?xml-stylesheet href="a.xsl"?>\n'})
valid(R, 'char_ref_in_namespace_uri', post=lambda t: t.replace(f'{NS["pafn"]}"', NS['pafn'].replace('.xsd', '&#46;xsd') + '"', 1),
      note='namespace names are compared after reference expansion')
valid('activatePaymentNoticeV2Response', 'hash_documento_internal_whitespace',
      mut=set_('transferList/transfer[2]/richiestaMarcaDaBollo/hashDocumento',
               Raw('\n          '.join(HASH[i:i + 11] for i in range(0, 44, 11)))),
      note='77 raw characters, 47 after the collapse whitespace facet: the .{4,72} pattern sees the collapsed form')
invalid('activatePaymentNoticeV2Response', 'hash_documento_73_after_collapse', 'pattern', 'hashDocumento',
        mut=set_('transferList/transfer[2]/richiestaMarcaDaBollo/hashDocumento',
                 Raw(HASH72[:36] + ' ' + HASH72[36:])), note='72 base64 characters plus one space: 73')
invalid('sendPaymentOutcomeV2Request', 'mbd_attachment_base64url', 'base64', 'MBDAttachment',
        mut=set_('details/marcheDaBollo/marcaDaBollo/MBDAttachment', base64.urlsafe_b64encode(b'\xfb\xff\xbe' * 4).decode()),
        oracle='valid', libxml2='valid',
        note='DIVERGENCE (deliberate): base64url ("-", "_") is not base64Binary; libxml2 skips the unknown '
             'characters and accepts it, pagonode rejects it')

valid('paSendRTV2Response', 'soap_fault_from_ec', base='min', post=lambda t: re.sub(
    r'    <pafn:paSendRTV2Response>.*</pafn:paSendRTV2Response>\n',
    '    <soapenv:Fault>\n      <faultcode>soapenv:Server</faultcode>\n'
    '      <faultstring>Unmarshalling Error: unexpected element paymentNote</faultstring>\n'
    '      <detail><e:errore xmlns:e="urn:esempio">1</e:errore></detail>\n    </soapenv:Fault>\n', t, flags=re.S),
    note='a SOAP 1.1 Fault in place of the response (valid envelope; not a pagoPA message)')

# --------------------------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------------------------

COLUMNS = ['file', 'verdict', 'rule', 'field', 'fault', 'oracle', 'libxml2', 'note']


def write_all():
    seen = set()
    for c in CASES:
        assert c.file not in seen, f'duplicate fixture {c.file}'
        seen.add(c.file)
    for d in ('valid', 'invalid'):
        os.makedirs(os.path.join(HERE, d), exist_ok=True)
        for f in os.listdir(os.path.join(HERE, d)):
            if f.endswith('.xml') and f'{d}/{f}' not in seen:
                os.remove(os.path.join(HERE, d, f))
    rows = []
    for c in sorted(CASES, key=lambda c: c.file):
        with open(os.path.join(HERE, c.file), 'wb') as fh:
            fh.write(c.render())
        for v in (c.rule, c.field, c.note):
            assert '\t' not in v and '\n' not in v
        rows.append([c.file, c.verdict, c.rule, c.field, c.fault, c.oracle, c.libxml2, c.note or '-'])
    with open(os.path.join(HERE, 'manifest.tsv'), 'w', encoding='utf-8', newline='\n') as fh:
        fh.write('\t'.join(COLUMNS) + '\n')
        for r in rows:
            fh.write('\t'.join(r) + '\n')
    return rows


def load_oracle():
    path = os.environ.get('XSD_CHECK', '/work/shared/tools/xsd-check')
    loader = importlib.machinery.SourceFileLoader('xsd_check', path)
    spec = importlib.util.spec_from_loader('xsd_check', loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def run_pagonode(files):
    """`pagonode validate` over the corpus: $PAGONODE if set, else a fresh `cargo build`."""
    exe = os.environ.get('PAGONODE')
    if not exe:
        exe = os.path.join(ROOT, 'target', 'debug', 'pagonode')
        if subprocess.run(['cargo', 'build', '-q', '--bin', 'pagonode'], cwd=ROOT).returncode != 0:
            sys.exit('generate.py: cargo build failed; fix the build or set PAGONODE=/path/to/pagonode')
    out = subprocess.run([exe, 'validate', *files], cwd=HERE, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith('VALID '):
            res[line.split()[1]] = ('valid', '-', '')
        elif line.startswith('INVALID '):
            _, name, *rest = line.split(None, 2)
            reason = rest[0] if rest else ''
            m = re.match(r'([A-Za-z0-9_.\-/]+): ', reason)
            field = m.group(1).rsplit('/', 1)[-1] if m else '-'
            res[name] = ('invalid', field, reason)
    return res


def check(rows):
    xc = load_oracle()
    problems = []
    files = [r[0] for r in rows]
    pn = run_pagonode(files)
    for r in rows:
        file, verdict, _rule, field, _fault, exp_oracle, exp_lib = r[:7]
        data = open(os.path.join(HERE, file), 'rb').read()
        try:
            errs = xc.check(data)
        except Exception as e:  # the oracle itself may choke (e.g. lxml internal errors)
            errs = [f'oracle error: {e}']
        saved = xc.SERVICE
        xc.SERVICE = set()
        try:
            lib_errs = xc.check(data)
        except Exception as e:
            lib_errs = [f'oracle error: {e}']
        finally:
            xc.SERVICE = saved
        got_oracle = 'invalid' if errs else 'valid'
        got_lib = 'invalid' if lib_errs else 'valid'
        if got_oracle != exp_oracle:
            problems.append(f'{file}: oracle says {got_oracle}, manifest says {exp_oracle}: {"; ".join(errs)[:300]}')
        if got_lib != exp_lib:
            problems.append(f'{file}: libxml2 says {got_lib}, manifest says {exp_lib}: {"; ".join(lib_errs)[:300]}')
        got, got_field, reason = pn.get(file, ('missing', '-', 'no output'))
        if got != verdict:
            problems.append(f'{file}: pagonode says {got}, manifest says {verdict}: {reason[:300]}'
                            + (f' | oracle: {"; ".join(errs)[:300]}' if errs else ''))
        elif verdict == 'invalid' and got_field != field:
            problems.append(f'{file}: pagonode blames {got_field!r}, manifest says {field!r}: {reason[:300]}')
        if verdict != got_oracle and 'DIVERGENCE' not in r[7] and got_oracle == exp_oracle:
            problems.append(f'{file}: verdict differs from the oracle without a documented DIVERGENCE')
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='verify oracle, libxml2 and pagonode verdicts')
    args = ap.parse_args()
    rows = write_all()
    nv = sum(r[1] == 'valid' for r in rows)
    print(f'wrote {len(rows)} fixtures ({nv} valid, {len(rows) - nv} invalid) and manifest.tsv')
    if args.check:
        problems = check(rows)
        for p in problems:
            print('MISMATCH', p)
        print(f'{len(rows) - len({p.split(":")[0] for p in problems})} fixtures agree, {len(problems)} problems')
        return 1 if problems else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
